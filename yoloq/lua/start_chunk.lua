-- One delivery of a chunk begins: decide what to do with it, in one round trip.
-- KEYS[1] job hash, KEYS[2] set of counted chunks, KEYS[3] the job's deliveries hash,
-- KEYS[4] the worker's in-flight hash, KEYS[5] the job-events channel
-- ARGV[1] chunk index, ARGV[2] now (unix seconds), ARGV[3] in-flight field, ARGV[4] the task
-- Returns {verdict, deliveries}: 'gone' (job expired or never created), 'cancelled',
-- 'ended' (finalised),
-- 'counted' (recorded by an earlier delivery), or 'run' with the deliveries started so
-- far, this one included (which names the part it writes). A 'run' lists the chunk in
-- flight and marks a queued job running.
local ttl = redis.call('TTL', KEYS[1])
if ttl == -2 then
  return {'gone', 0}
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' then
  return {'cancelled', 0}
end
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then
  return {'counted', 0}
end
if status ~= 'planning' and status ~= 'queued' and status ~= 'running' then
  -- Finalised, its chunk markers dropped once parts.json and the manifest were written.
  return {'ended', 0}
end
local deliveries = redis.call('HINCRBY', KEYS[3], ARGV[1], 1)
if ttl > 0 then
  redis.call('EXPIRE', KEYS[3], ttl)
end
redis.call('HSET', KEYS[4], ARGV[3], ARGV[4])
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2])
  publish_event(KEYS[1], KEYS[5])
elseif status == 'planning' then
  -- Chunks run while the planner lists; the job says 'running' once planning ends.
  redis.call('HSETNX', KEYS[1], 'started_at', ARGV[2])
end
return {'run', deliveries}
