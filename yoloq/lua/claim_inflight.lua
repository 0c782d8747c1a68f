-- Take the in-flight chunks of a worker that is gone, so exactly one caller requeues them.
-- KEYS[1] the worker's heartbeat hash, KEYS[2] its in-flight hash
-- ARGV[1] '1' to take them even if the heartbeat is live (the worker itself, restarted)
-- Returns the tasks (JSON) taken; none while the worker's heartbeat lives.
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1]) == 1 then
  return {}
end
local tasks = redis.call('HVALS', KEYS[2])
redis.call('DEL', KEYS[2])
return tasks
