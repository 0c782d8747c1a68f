-- The planner has written a page of the job's images to S3: count it, before its chunks
-- are sent, so a planner killed in between resumes after this page and sends them then.
-- KEYS[1] job hash, KEYS[2] the model's count of queued images, KEYS[3] the job-events channel
-- ARGV[1] the page's number, ARGV[2] images in it, ARGV[3] chunks in it, ARGV[4] the
-- listing's cursor after it, ARGV[5] now (unix seconds)
-- Returns 'planned'; 'stale' if that page was counted already (a second planner); or the
-- job's status if it is no longer planning (cancelled), false if the job is gone.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status ~= 'planning' then
  return status
end
if tonumber(redis.call('HGET', KEYS[1], 'pages') or '0') ~= tonumber(ARGV[1]) then
  return 'stale'
end
redis.call('HINCRBY', KEYS[1], 'total', tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'chunks', tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'pages', tonumber(ARGV[1]) + 1, 'cursor', ARGV[4],
  'planner_beat', ARGV[5])
redis.call('INCRBY', KEYS[2], tonumber(ARGV[2]))
publish_event(KEYS[1], KEYS[3])
return 'planned'
