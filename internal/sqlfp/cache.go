package sqlfp

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// DefaultCacheEntries is the cache size NewCache uses for maxEntries <= 0.
const DefaultCacheEntries = 8192

// MaxCacheKeyLen is the longest SQL text a Cache stores. Longer texts are
// fingerprinted on every Lookup and counted as misses: the agent cuts texts
// at about 2 KiB, so only rare texts are this long, and keeping them out
// bounds the cache's memory to about maxEntries × (MaxCacheKeyLen +
// MaxNormalizedLen). Caching them under a hash instead would trade that for
// a (tiny) chance of returning another statement's Result.
const MaxCacheKeyLen = 8 << 10

// CacheStats are counters of a Cache since it was created.
type CacheStats struct {
	Hits      uint64 // lookups answered from the cache
	Misses    uint64 // lookups that had to fingerprint (including texts too long to cache)
	Fallbacks uint64 // misses whose Result came from the fallback tokenizer
	Entries   int    // texts currently cached
}

// Cache memoizes Fingerprint by SQL text. It is safe for concurrent use.
//
// Memory is bounded by keeping two generations per shard: new entries go to
// the current map, and when it holds its share of maxEntries/2 it becomes the
// previous map and the old previous map is dropped whole. A hit in the
// previous map moves the entry to the current one, so statements in use
// survive and one-off texts age out, approximating LRU without per-hit
// bookkeeping. Shards, each with its own lock, keep goroutines from queueing
// on one mutex.
type Cache struct {
	fp      func(string) Result // Fingerprint, or FingerprintTruncated
	seed    maphash.Seed
	shards  []cacheShard
	mask    uint64
	genSize int           // entries per generation per shard
	long    atomic.Uint64 // lookups of texts longer than MaxCacheKeyLen
	longFB  atomic.Uint64 // of those, fallback results
}

type cacheShard struct {
	mu        sync.RWMutex
	cur, prev map[string]cacheEntry
	hits      atomic.Uint64
	misses    atomic.Uint64
	fallbacks atomic.Uint64
	// Pad shards apart so that neighbouring shards' locks and counters do
	// not share a cache line.
	_ [64]byte
}

// cacheEntry keeps its own key so that promoting an entry from the previous
// generation re-inserts the already allocated string rather than copying the
// caller's bytes again.
type cacheEntry struct {
	key string
	res Result
}

// NewCache returns a Cache holding at most maxEntries texts. maxEntries <= 0
// selects DefaultCacheEntries; values below 2 are raised to 2, because each
// shard needs room for two generations.
func NewCache(maxEntries int) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	maxEntries = max(maxEntries, 2)
	// Use up to 32 shards but keep at least 128 entries per shard, so that
	// small caches do not churn through tiny generations.
	n := 1
	for n < 32 && maxEntries/(n*2) >= 128 {
		n *= 2
	}
	c := &Cache{
		fp:      Fingerprint,
		seed:    maphash.MakeSeed(),
		shards:  make([]cacheShard, n),
		mask:    uint64(n - 1),
		genSize: maxEntries / n / 2,
	}
	for i := range c.shards {
		c.shards[i].cur = make(map[string]cacheEntry)
	}
	return c
}

// NewTruncatedCache is NewCache for FingerprintTruncated: keep texts known
// to be truncated in a cache of their own, since the same bytes complete
// and cut short have different fingerprints.
func NewTruncatedCache(maxEntries int) *Cache {
	c := NewCache(maxEntries)
	c.fp = FingerprintTruncated
	return c
}

// Lookup returns Fingerprint(string(sql)), from the cache when it can. It
// does not retain sql, so the caller may reuse the buffer, and a hit does not
// allocate.
func (c *Cache) Lookup(sql []byte) Result {
	if len(sql) > MaxCacheKeyLen {
		r := c.fp(string(sql))
		c.long.Add(1)
		if r.Fallback {
			c.longFB.Add(1)
		}
		return r
	}
	sh := &c.shards[0]
	if c.mask != 0 {
		sh = &c.shards[maphash.Bytes(c.seed, sql)&c.mask]
	}

	sh.mu.RLock()
	// Indexing with string(sql) directly lets the compiler skip the copy.
	e, ok := sh.cur[string(sql)]
	inPrev := false
	if !ok {
		e, ok = sh.prev[string(sql)]
		inPrev = ok
	}
	sh.mu.RUnlock()
	if ok {
		sh.hits.Add(1)
		if inPrev {
			sh.mu.Lock()
			if _, there := sh.prev[e.key]; there {
				delete(sh.prev, e.key)
				c.insertLocked(sh, e)
			}
			sh.mu.Unlock()
		}
		return e.res
	}

	// Fingerprint outside the lock: it is the expensive part, and two
	// goroutines missing on the same text at once merely both compute it.
	key := string(sql)
	r := c.fp(key)
	sh.misses.Add(1)
	if r.Fallback {
		sh.fallbacks.Add(1)
	}
	sh.mu.Lock()
	if _, there := sh.cur[key]; !there {
		delete(sh.prev, key)
		c.insertLocked(sh, cacheEntry{key: key, res: r})
	}
	sh.mu.Unlock()
	return r
}

// insertLocked adds e to the current generation, first rotating the
// generations if the current one is full. sh.mu must be held for writing.
func (c *Cache) insertLocked(sh *cacheShard, e cacheEntry) {
	if len(sh.cur) >= c.genSize {
		sh.prev = sh.cur
		sh.cur = make(map[string]cacheEntry, c.genSize)
	}
	sh.cur[e.key] = e
}

// Stats returns the counters. They are read without stopping lookups, so
// under concurrent use they are a close, not an exact, snapshot.
func (c *Cache) Stats() CacheStats {
	s := CacheStats{Misses: c.long.Load(), Fallbacks: c.longFB.Load()}
	for i := range c.shards {
		sh := &c.shards[i]
		s.Hits += sh.hits.Load()
		s.Misses += sh.misses.Load()
		s.Fallbacks += sh.fallbacks.Load()
		sh.mu.RLock()
		s.Entries += len(sh.cur) + len(sh.prev)
		sh.mu.RUnlock()
	}
	return s
}
