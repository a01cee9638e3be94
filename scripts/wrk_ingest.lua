-- wrk script for the ingest benchmark (scripts/wrk_ingest.py): POST /api/v1/fixes, each
-- request from the next enrolled device in turn (round robin over all of them).
--
--   wrk -t1 -c64 -d30s --latency -s scripts/wrk_ingest.lua http://127.0.0.1:PORT -- \
--       mode=batched tokens=FILE start_ms=MS [step_ms=1000] [batch=100] [seed=1] \
--       walk=LON_LO,LAT_LO,LON_HI,LAT_HI start=LON_LO,LAT_LO,LON_HI,LAT_HI step=E7
--
-- Arguments are key=value pairs after "--". tokens: a file of device tokens, one a line.
-- mode: "batched" (batch fixes a request, default 100) or "single" (one fix a request).
-- A device's n-th fix is time-stamped start_ms + n * step_ms (epoch ms), so timestamps
-- increase strictly per device; the caller picks start_ms so that a run stays inside the
-- server's accepted range. (wrk calls request() once before the run to check it and never
-- sends that request, so the first device's fixes start one request later.) Positions are in 1e-7 degrees: each device starts at a random
-- point of the "start" box and walks by up to "step" in longitude and latitude per fix,
-- kept inside the "walk" box (the seeded county less a margin). The body is the native
-- protocol's, as the load generator writes it: id, ts, lat, lon (7 decimals), accuracy_m.
--
-- Every response is read: non-200 answers are counted by status (with the first one's body
-- kept), and the accepted, duplicate and rejected fixes of 200 answers are summed. done()
-- prints one line "wrk_ingest {json}" with these counts, wrk's own error counts and the
-- latency percentiles, for the caller to parse.

local format, concat, floor, random = string.format, table.concat, math.floor, math.random

local FIX = '{"id":"%d","ts":%d,"lat":%d.%07d,"lon":%d.%07d,"accuracy_m":%d}'
local E7 = 10000000

local heads, seqs, lons, lats = {}, {}, {}, {}
local devices, turn, per_request, start_ms, step_ms, step = 0, 1, 1, 0, 1000, 2000
local lon_lo, lat_lo, lon_hi, lat_hi

-- Read by done() through thread:get, so global.
responses, accepted, duplicates, rejected, unread = 0, 0, 0, 0, 0
statuses = {} -- non-200 status (as a string) -> count
first_error = ""

local function box(value, name)
  local a, b, c, d = (value or ""):match("^(%d+),(%d+),(%d+),(%d+)$")
  assert(a, name .. "=LON_LO,LAT_LO,LON_HI,LAT_HI (1e-7 degrees) is required")
  return tonumber(a), tonumber(b), tonumber(c), tonumber(d)
end

function init(args)
  local cfg = {}
  for _, arg in pairs(args) do
    local key, value = arg:match("^([%w_]+)=(.*)$")
    if key then
      cfg[key] = value
    end
  end
  if cfg.mode == "batched" then
    per_request = tonumber(cfg.batch or "100")
  elseif cfg.mode == "single" then
    per_request = 1
  else
    error("mode=batched or mode=single is required")
  end
  start_ms = assert(tonumber(cfg.start_ms), "start_ms=<epoch ms> is required")
  step_ms = tonumber(cfg.step_ms or "1000")
  step = tonumber(cfg.step or "2000")
  lon_lo, lat_lo, lon_hi, lat_hi = box(cfg.walk, "walk")
  local s_lon_lo, s_lat_lo, s_lon_hi, s_lat_hi = box(cfg.start, "start")
  math.randomseed(tonumber(cfg.seed or "1"))

  local host = wrk.host
  if wrk.port then
    host = host .. ":" .. wrk.port
  end
  local path = assert(cfg.tokens, "tokens=<file> is required")
  for token in io.lines(path) do
    if #token > 0 then
      devices = devices + 1
      heads[devices] = "POST /api/v1/fixes HTTP/1.1\r\nHost: " .. host
        .. "\r\nAuthorization: Bearer " .. token
        .. "\r\nContent-Type: application/json\r\nContent-Length: "
      seqs[devices] = 0
      lons[devices] = random(s_lon_lo, s_lon_hi)
      lats[devices] = random(s_lat_lo, s_lat_hi)
    end
  end
  assert(devices > 0, "no device token in " .. path)
end

function request()
  local i = turn
  turn = i % devices + 1
  local seq, lon, lat = seqs[i], lons[i], lats[i]
  local fixes = {}
  for k = 1, per_request do
    seq = seq + 1
    lon = lon + random(-step, step)
    if lon < lon_lo then lon = lon_lo elseif lon > lon_hi then lon = lon_hi end
    lat = lat + random(-step, step)
    if lat < lat_lo then lat = lat_lo elseif lat > lat_hi then lat = lat_hi end
    fixes[k] = format(
      FIX, seq, start_ms + seq * step_ms,
      floor(lat / E7), lat % E7, floor(lon / E7), lon % E7, 8 + seq % 17
    )
  end
  seqs[i], lons[i], lats[i] = seq, lon, lat
  local body = '{"fixes":[' .. concat(fixes, ",") .. "]}"
  return heads[i] .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
  responses = responses + 1
  if status == 200 then
    local n = body:match('"accepted":%s*(%d+)')
    if not n then
      unread = unread + 1
      return
    end
    accepted = accepted + tonumber(n)
    duplicates = duplicates + tonumber(body:match('"duplicates":%s*(%d+)') or "0")
    if not body:find('"rejected":%s*%[%s*%]') then
      local _, refused = body:gsub('"index"', "")
      rejected = rejected + refused
      if first_error == "" then
        first_error = "200 " .. body:sub(1, 300)
      end
    end
  else
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if first_error == "" then
      first_error = key .. " " .. (body or ""):sub(1, 300)
    end
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return format("\\u%04x", c:byte())
  end) .. '"'
end

function done(summary, latency, requests)
  local totals = { responses = 0, accepted = 0, duplicates = 0, rejected = 0, unread = 0 }
  local by_status, errors = {}, {}
  for _, thread in ipairs(threads) do
    for name in pairs(totals) do
      totals[name] = totals[name] + thread:get(name)
    end
    for status, count in pairs(thread:get("statuses")) do
      by_status[status] = (by_status[status] or 0) + count
    end
    local sample = thread:get("first_error")
    if sample ~= "" then
      errors[#errors + 1] = sample
    end
  end
  local statuses_json = {}
  for status, count in pairs(by_status) do
    statuses_json[#statuses_json + 1] = format('"%s":%d', status, count)
  end
  local fields = {
    format('"duration_us":%d', summary.duration),
    format('"requests":%d', summary.requests),
    format('"bytes":%d', summary.bytes),
    format('"connect_errors":%d', summary.errors.connect),
    format('"read_errors":%d', summary.errors.read),
    format('"write_errors":%d', summary.errors.write),
    format('"timeouts":%d', summary.errors.timeout),
    format('"status_errors":%d', summary.errors.status),
    '"non_200":{' .. concat(statuses_json, ",") .. "}",
    format('"first_error":%s', quote(errors[1] or "")),
  }
  for name, value in pairs(totals) do
    fields[#fields + 1] = format('"%s":%d', name, value)
  end
  for _, p in ipairs({ 50, 90, 99 }) do
    fields[#fields + 1] = format('"latency_p%d_us":%d', p, latency:percentile(p))
  end
  fields[#fields + 1] = format('"latency_mean_us":%.1f', latency.mean)
  fields[#fields + 1] = format('"latency_max_us":%d', latency.max)
  io.write("wrk_ingest {", concat(fields, ","), "}\n")
end
