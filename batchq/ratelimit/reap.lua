-- reap: reclaim the slots of lapsed leases (dead holders) and hand free slots to waiters; for the sweeper.
-- Keys and common ARGV: see lib.lua. No script ARGV. Returns the number of lapsed leases reclaimed.
return handoff(now_ms())
