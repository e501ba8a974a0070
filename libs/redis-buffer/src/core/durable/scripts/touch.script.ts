/**
 * TOUCH: renews (or releases) the entries a consumer holds.
 *
 * KEYS[1] stream
 * KEYS[2..] the handled markers of those entries that have an idempotency key
 * ARGV[1] group; ARGV[2] consumer; ARGV[3] idle ms to set; ARGV[4] lease ms;
 * then per entry (id, index in KEYS of its handled marker or 0, lease token)
 *
 * For each entry this consumer still owns: sets its idle time (0 renews it, claimIdle hands it at
 * once to the group's other instances) without counting a delivery (JUSTID), and renews (lease ms
 * > 0) or frees (0) its idempotency lease if it still holds it. Returns the ids it no longer owns.
 */
export const TOUCH_SCRIPT = `
local lost = {}
for i = 5, #ARGV, 3 do
  local id = ARGV[i]
  local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if #pending == 0 or pending[1][2] ~= ARGV[2] then
    table.insert(lost, id)
  else
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
    local index = tonumber(ARGV[i + 1])
    if index > 0 and redis.call('GET', KEYS[index]) == ARGV[i + 2] then
      if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[index], ARGV[4]) else redis.call('DEL', KEYS[index]) end
    end
  end
end
return lost
`;
