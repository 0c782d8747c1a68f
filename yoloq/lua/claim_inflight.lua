-- Take the in-flight chunks of a worker that is gone, so exactly one caller requeues them.
-- KEYS[1] the worker's heartbeat hash, KEYS[2] its in-flight hash, KEYS[3] the workers
-- sorted set; ARGV[1] the worker's name, ARGV[2] '1' to take them even if the heartbeat
-- is live (the worker itself, restarted)
-- Returns the tasks (JSON) taken; none while the worker's heartbeat lives. A gone worker
-- also leaves the workers set, so it is looked at once.
local alive = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[2] ~= '1' and alive then
  return {}
end
local tasks = redis.call('HVALS', KEYS[2])
redis.call('DEL', KEYS[2])
if not alive then
  redis.call('ZREM', KEYS[3], ARGV[1])
end
return tasks
