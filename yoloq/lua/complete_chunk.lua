-- Record one chunk exactly once: mark it counted by the delivery whose part holds its
-- results, and add its items to the job's counts.
-- KEYS[1] job hash, KEYS[2] hash of counted chunks (chunk -> delivery), KEYS[3] items hash,
-- KEYS[4] the model's count of queued images, KEYS[5] the job-events channel
-- ARGV[1] chunk index, ARGV[2] this delivery's part ('delivery:bytes'), ARGV[3] images in the chunk, ARGV[4] items
-- failed, ARGV[5..] item index, item JSON, ... (only for a job of one chunk: other jobs'
-- items are in their parts in S3, and Redis keeps nothing per item)
-- Returns {newly_counted (1|0), chunks_done, chunks_total, the part counted, the segment
-- this count completed or -1}, where
-- chunks_total is 0 while the job is still being planned (it cannot be complete yet);
-- {-1, 0, 0, '', -1} if the job is gone, {-2, 0, 0, '', -1} if it was cancelled, {-3, 0, 0, '', -1} if
-- it ended and no longer keeps chunk markers.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1, 0, 0, '', -1}
end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'cancelled' then
  return {-2, 0, 0, '', -1}
end
local ended = status ~= 'planning' and status ~= 'queued' and status ~= 'running'
if ended and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  -- Finalised, and its chunk markers dropped (parts.json holds them): nothing to count.
  return {-3, 0, 0, '', -1}
end
local added = 0
local completed_segment = -1
-- No images: a question (how far is the job?) from a delivery of a chunk counted already.
if tonumber(ARGV[3]) > 0 then
  added = redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2])
end
if added == 1 then
  local images = tonumber(ARGV[3])
  for i = 5, #ARGV, 2 do
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  end
  redis.call('HINCRBY', KEYS[1], 'done', images)
  redis.call('HINCRBY', KEYS[1], 'failed', tonumber(ARGV[4]))
  redis.call('DECRBY', KEYS[4], images)
  -- Chunk markers and items expire with the job that owns them.
  local ttl = redis.call('TTL', KEYS[1])
  if ttl > 0 then
    redis.call('EXPIRE', KEYS[2], ttl)
    if #ARGV > 4 then
      redis.call('EXPIRE', KEYS[3], ttl)
    end
  end
  publish_event(KEYS[1], KEYS[5])
  -- A run of segment_chunks chunks all counted: its counter says so once, to the delivery
  -- that completed it, which joins their parts into a segment.
  local per_segment = tonumber(redis.call('HGET', KEYS[1], 'segment_chunks') or '0')
  if per_segment > 0 then
    local segment = math.floor(tonumber(ARGV[1]) / per_segment)
    if redis.call('HINCRBY', KEYS[1], 'segment_counted:' .. segment, 1) == per_segment then
      completed_segment = segment
    end
  end
end
local chunks_done = redis.call('HLEN', KEYS[2])
local chunks_total = 0
if status ~= 'planning' then
  chunks_total = tonumber(redis.call('HGET', KEYS[1], 'chunks'))
end
return {added, chunks_done, chunks_total, redis.call('HGET', KEYS[2], ARGV[1]) or '',
  completed_segment}
