package lock

// LocalLen returns how many keys have a lock in l's map.
func LocalLen(l *Local) int { return l.len() }
