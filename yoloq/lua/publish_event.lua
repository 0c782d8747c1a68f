-- Shared tail of the scripts that change a job: publish its state on the events channel.
-- Prepended to them (see JobStore), with KEYS[1] the job hash and EVENTS the channel.
local function publish_event(job_key, channel)
  local f = redis.call('HMGET', job_key, 'id', 'status', 'done', 'failed', 'total')
  if f[1] then
    redis.call('PUBLISH', channel, cjson.encode({
      job = f[1], status = f[2], done = tonumber(f[3]), failed = tonumber(f[4]),
      total = tonumber(f[5])
    }))
  end
end
