import { OVERSIZED_KEPT_FIELDS, OVERSIZED_KEPT_VALUE_BYTES } from '../durable-entry.js';
import { ORDER_MEMBER_LUA } from './order-member.lua.js';

/**
 * FETCH: reads new entries for a group and registers them, in one step.
 *
 * KEYS[1] stream
 * KEYS[2] the group's attempts hash
 * KEYS[3] the group's order index (see order-member.lua.ts)
 * ARGV[1] group; ARGV[2] consumer; ARGV[3] count; ARGV[4] max entry bytes (the consumer's maxPayloadBytes)
 *
 * Never blocks (scripts may not): the caller blocks in XREAD outside and fetches again. In the same
 * step as the XREADGROUP:
 * - each entry with a "key" field joins the order index, so a key's entries are ordered whatever
 *   instance read them, and no crash can leave a delivered entry out of it;
 * - each entry with neither "key" nor "idem" has its first attempt counted: nothing can hold it
 *   back, so the consumer starts it without the BEGIN script (see EntryRunner, same rule; the
 *   first of a repeated field counts).
 * - an entry whose size (bytes of every field name and value) is over the max is returned as
 *   [id, kept fields, size]: only the fields of OVERSIZED_KEPT_FIELDS (first of each, values of at
 *   most OVERSIZED_KEPT_VALUE_BYTES, in that order) then `oversized` = size, so it never crosses
 *   the network whole; the consumer dead-letters it unrun (see durable-entry.ts, entry-admission.ts).
 * Returns [entries, id of the stream's last entry or '0-0'] (where the caller blocks from).
 */
export const FETCH_SCRIPT = `${ORDER_MEMBER_LUA}
local keptNames = {${OVERSIZED_KEPT_FIELDS.map((name) => `'${name}'`).join(', ')}}
local maxBytes = tonumber(ARGV[4])
local read = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS', KEYS[1], '>')
local entries = {}
if read then
  entries = read[1][2]
  for _, entry in ipairs(entries) do
    local fields = entry[2]
    local key, idem
    local size = 0
    local first = {}
    for i = 1, #fields, 2 do
      size = size + #fields[i] + #fields[i + 1]
      if first[fields[i]] == nil then first[fields[i]] = fields[i + 1] end
      if fields[i] == 'key' and not key then key = fields[i + 1]
      elseif fields[i] == 'idem' and not idem then idem = fields[i + 1] end
    end
    if key then redis.call('ZADD', KEYS[3], 0, orderMember(key, entry[1])) end
    if not key and not idem then redis.call('HSET', KEYS[2], entry[1], 1) end
    if size > maxBytes then
      local kept = {}
      for _, name in ipairs(keptNames) do
        local value = first[name]
        if value and #value <= ${OVERSIZED_KEPT_VALUE_BYTES} then
          table.insert(kept, name)
          table.insert(kept, value)
        end
      end
      table.insert(kept, 'oversized')
      table.insert(kept, string.format('%d', size))
      entry[2] = kept
      entry[3] = size
    end
  end
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local lastId = '0-0'
if #last > 0 then lastId = last[1][1] end
return {entries, lastId}
`;
