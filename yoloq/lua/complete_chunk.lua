-- Record one chunk's results exactly once.
-- KEYS[1] job hash, KEYS[2] set of counted chunks, KEYS[3] items hash,
-- KEYS[4] the model's count of queued images, KEYS[5] the job-events channel
-- ARGV[1] chunk index, ARGV[2] items failed in the chunk, ARGV[3..] item index, item JSON, ...
-- Returns {newly_counted (1|0), chunks_done, chunks_total}; {-1, 0, 0} if the job is gone,
-- {-2, 0, 0} if it was cancelled (nothing more is recorded for it).
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0}
end
if redis.call('HGET', KEYS[1], 'status') == 'cancelled' then
  return {-2, 0, 0}
end
local added = redis.call('SADD', KEYS[2], ARGV[1])
if added == 1 then
  local items = (#ARGV - 2) / 2
  for i = 3, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
  redis.call('HINCRBY', KEYS[1], 'done', items)
  redis.call('HINCRBY', KEYS[1], 'failed', tonumber(ARGV[2]))
  redis.call('DECRBY', KEYS[4], items)
  -- Results expire with the job that owns them.
  local ttl = redis.call('TTL', KEYS[1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[2], ttl)
    redis.call('EXPIRE', KEYS[3], ttl)
  end
  publish_event(KEYS[1], KEYS[5])
end
local chunks_done = redis.call('SCARD', KEYS[2])
local chunks_total = tonumber(redis.call('HGET', KEYS[1], 'chunks'))
return {added, chunks_done, chunks_total}
