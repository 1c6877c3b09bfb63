package lock

// LocalLen returns how many keys have a lock in l's map.
func LocalLen(l *Local) int { return l.len() }

// Slot returns the Redis Cluster hash slot of key.
func Slot(key string) uint16 { return slot(key) }
