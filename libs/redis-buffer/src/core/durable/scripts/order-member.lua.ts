/**
 * Lua helpers shared by the scripts that read or write a group's order index (a sorted set, all
 * scores 0, read by lexical range). A member is `<byte length of key>:<key><ms:20 digits>-<seq:20 digits>`:
 * the decimal length followed by `:` makes the prefix of one key never a prefix of another key's
 * members, and the zero-padded id makes lexical order equal to stream order. So the head of a key is
 * the first member in `[prefix, prefix..':')`, and every name the scripts touch is a declared key.
 * `releaseTurn` removes an entry that is done and, when its key has a next entry, names the key on
 * the group's turn channel so the instance holding that entry starts it without waiting for a poll.
 */
export const ORDER_MEMBER_LUA = `
local function pad(digits)
  return string.rep('0', 20 - #digits) .. digits
end
local function orderPrefix(key)
  return #key .. ':' .. key
end
local function orderMember(key, id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return orderPrefix(key) .. pad(ms) .. '-' .. pad(seq)
end
local function memberId(member, key)
  local tail = string.sub(member, #orderPrefix(key) + 1)
  local ms, seq = string.match(tail, '^(%d+)-(%d+)$')
  return (string.gsub(ms, '^0+(%d)', '%1')) .. '-' .. (string.gsub(seq, '^0+(%d)', '%1'))
end
local function keyHead(order, key)
  local prefix = orderPrefix(key)
  local first = redis.call('ZRANGEBYLEX', order, '[' .. prefix, '(' .. prefix .. ':', 'LIMIT', 0, 1)
  if #first == 0 then return nil end
  return memberId(first[1], key)
end
local function releaseTurn(order, key, id, channel)
  if key == '' then return end
  redis.call('ZREM', order, orderMember(key, id))
  if keyHead(order, key) then redis.call('PUBLISH', channel, key) end
end
`;
