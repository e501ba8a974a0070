/**
 * TRIM: trims a stream by the retention policy, never past what a consumer group still needs.
 *
 * KEYS[1] stream
 * ARGV[1] policy threshold id ('' for none); ARGV[2] max length (0 for none); ARGV[3] '~' or '=';
 * ARGV[4] scan limit
 *
 * Lowers the threshold (older than the id, or beyond max length) to the first entry some group
 * still needs: its oldest pending entry, or the entry after the last one delivered to it. Redis
 * 7.0's XTRIM alone would delete pending entries without a word.
 * Returns [entries trimmed, threshold used or '', 1 if unacknowledged entries held it back].
 *
 * Both variants below start with the same policy threshold.
 */
const TRIM_PRELUDE = `
local function parse(id)
  local dash = string.find(id, '-', 1, true)
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)
  local ms, seq = parse(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {0, '', 0} end
local threshold = ARGV[1]
local maxLength = tonumber(ARGV[2])
if maxLength > 0 then
  local excess = redis.call('XLEN', KEYS[1]) - maxLength
  if excess > 0 then
    local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', math.min(excess, tonumber(ARGV[4])))
    local byLength = after(oldest[#oldest][1])
    if threshold == '' or less(threshold, byLength) then threshold = byLength end
  end
end
if threshold == '' then return {0, '', 0} end
`;

/** The Redis 7.0 variant: lowers the threshold to what every group still needs, then trims. */
export const TRIM_SCRIPT = `${TRIM_PRELUDE}local held = 0
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
for _, group in ipairs(groups) do
  local name, pendingCount, lastDelivered
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1]
    elseif group[i] == 'pending' then pendingCount = group[i + 1]
    elseif group[i] == 'last-delivered-id' then lastDelivered = group[i + 1] end
  end
  local needed = after(lastDelivered)
  if pendingCount > 0 then
    local first = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
    if #first > 0 and less(first[1][1], needed) then needed = first[1][1] end
  end
  if less(needed, threshold) then
    threshold = needed
    held = 1
  end
end
local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3], threshold)
return {trimmed, threshold, held}
`;

/**
 * TRIM on Redis 8.2 and later: same keys, arguments and reply, the same threshold, but the server's
 * `XTRIM … ACKED` keeps every entry some group has not acknowledged (or not received yet) by itself.
 * It may trim acknowledged entries after an older one that is still pending, which the 7.0 script
 * cannot: one slow entry no longer holds the whole stream's retention back.
 * Reports `held` when the oldest entry left is older than the threshold and a group still needs it.
 */
export const TRIM_ACKED_SCRIPT = `${TRIM_PRELUDE}local trimmed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[3], threshold, 'ACKED')
local held = 0
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 and less(first[1][1], threshold) then
  local oldest = first[1][1]
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, lastDelivered
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1]
      elseif group[i] == 'last-delivered-id' then lastDelivered = group[i + 1] end
    end
    if less(lastDelivered, oldest) or #redis.call('XPENDING', KEYS[1], name, oldest, oldest, 1) > 0 then held = 1 end
  end
end
return {trimmed, threshold, held}
`;
