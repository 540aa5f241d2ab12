"""The Lua scripts of the Redis cluster, and what a Redis outage looks like.

Every script that stamps a lease reads Redis's own clock (``TIME``), so the
nodes' clocks never matter. ``TIME`` is allowed before writes because Redis
(>= 5) replicates scripts by their effects.
"""

from __future__ import annotations

from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["ACQUIRE", "COALESCE", "OUTAGE", "RELEASE", "RENEW_CLAIM", "RENEW_SLOTS", "UNREACHABLE"]

#: What "Redis cannot be reached" looks like from redis-py and asyncio.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)

#: What a Redis that cannot be used looks like: unreachable, or refusing writes
#: for a while (``READONLY``: a replica, as after a failover; ``OOM``: full;
#: ``CLUSTERDOWN``/``MASTERDOWN``, ``TRYAGAIN``). Any other refusal is a bug.
OUTAGE = (*UNREACHABLE, ReadOnlyError, OutOfMemoryError, ClusterDownError, TryAgainError)

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

#: KEYS: the slot ZSET; ARGV: lease ms, re-add ("1") or not ("0"), members...
#: Extends the members still there and returns those that are not (released
#: meanwhile, or lost by Redis); with re-add, adds them all (even past the
#: limit) and returns none.
RENEW_SLOTS = f"""{_NOW}
local lease = tonumber(ARGV[1])
local missing = {{}}
if ARGV[2] == '1' then
  for i = 3, #ARGV do redis.call('ZADD', KEYS[1], now + lease, ARGV[i]) end
else
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  for i = 3, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
      redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
    else
      missing[#missing + 1] = ARGV[i]
    end
  end
end
redis.call('PEXPIRE', KEYS[1], lease)
return missing
"""

#: KEYS: the claim; ARGV: member, lease ms, re-add ("1") or not ("0").
#: 1: still ours (extended), 0: another member's, 2: nobody's (with re-add: ours again, 1).
RENEW_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if v then return 0 end
if ARGV[3] ~= '1' then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
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
