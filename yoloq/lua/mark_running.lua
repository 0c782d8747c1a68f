-- A queued job becomes running when its first chunk starts; any later status is kept.
-- KEYS[1] job hash; ARGV[1] now (unix seconds)
if redis.call('HGET', KEYS[1], 'status') == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1])
  return 1
end
return 0
