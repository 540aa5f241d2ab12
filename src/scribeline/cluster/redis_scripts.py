"""The Lua scripts of the Redis cluster, and what an unreachable Redis looks like.

Every script that stamps a lease reads Redis's own clock (``TIME``), so the
nodes' clocks never matter. ``TIME`` is allowed before writes because Redis
(>= 5) replicates scripts by their effects.
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["ACQUIRE", "COALESCE", "RELEASE", "RENEW_CLAIM", "RENEW_SLOTS", "UNREACHABLE"]

#: What "Redis cannot be reached" looks like from redis-py and asyncio.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

# Redis's clock, in ms.
_NOW = (
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)"
)

#: KEYS: the slot ZSET; ARGV: member, limit, lease ms. 1: admitted, 0: full.
ACQUIRE = f"""{_NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

#: KEYS: the slot ZSET; ARGV: lease ms, members... Re-adds them (even past the limit).
RENEW_SLOTS = f"""{_NOW}
local lease = tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], lease)
return 1
"""

#: KEYS: the claim; ARGV: member, lease ms. 1: still ours (or free, now ours), 0: taken.
RENEW_CLAIM = """
local v = redis.call('GET', KEYS[1])
if not v or v == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

#: KEYS: the slot ZSET, the claim; ARGV: member. Drops its slot, and its claim if it holds it.
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""

#: KEYS: the turn; ARGV: interval ms. 0: the turn is ours, else ms until it ends.
COALESCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 1 then return 1 end
return ttl
"""
