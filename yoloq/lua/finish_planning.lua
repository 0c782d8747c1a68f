-- The planner has listed every image: the job's total is final.
-- KEYS[1] job hash, KEYS[2] hash of counted chunks, KEYS[3] the job-events channel
-- ARGV[1] now (unix seconds), ARGV[2] '1' if listing stopped at the job's image limit
-- Returns {status, complete}: the status that stands, and 1 if every chunk was counted
-- already (the planner then finalises the job, as no chunk's worker will).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return {false, 0}
end
if status ~= 'planning' then
  return {status, 0}
end
if redis.call('HEXISTS', KEYS[1], 'started_at') == 1 then
  status = 'running'
else
  status = 'queued'
end
redis.call('HSET', KEYS[1], 'status', status, 'planned_at', ARGV[1], 'truncated', ARGV[2])
publish_event(KEYS[1], KEYS[3])
local chunks = tonumber(redis.call('HGET', KEYS[1], 'chunks'))
local complete = 0
if redis.call('HLEN', KEYS[2]) >= chunks then
  complete = 1
end
return {status, complete}
