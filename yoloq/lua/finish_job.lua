-- Set a job's final status once; a second finisher (a redelivered last chunk) keeps the first.
-- KEYS[1] job hash, KEYS[2] the job-events channel; ARGV[1] final status, ARGV[2] now (unix seconds)
-- Returns the job's status after the call, or false if the job is gone.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished_at', ARGV[2])
  publish_event(KEYS[1], KEYS[2])
  return ARGV[1]
end
return status
