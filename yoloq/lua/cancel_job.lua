-- Cancel a job that has not ended: its remaining images leave the queue count, and
-- chunks still queued are skipped by workers (complete_chunk.lua refuses them), and a
-- planner still listing stops (plan_page.lua refuses its pages).
-- KEYS[1] job hash, KEYS[2] the model's count of queued images, KEYS[3] the job-events
-- channel; ARGV[1] now (unix seconds)
-- Returns the job's status after the call, or false if the job is gone.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
if status == 'planning' or status == 'queued' or status == 'running' then
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1])
  local total = tonumber(redis.call('HGET', KEYS[1], 'total'))
  local done = tonumber(redis.call('HGET', KEYS[1], 'done'))
  redis.call('DECRBY', KEYS[2], total - done)
  publish_event(KEYS[1], KEYS[3])
  return 'cancelled'
end
return status
