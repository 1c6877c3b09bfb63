package reservation

import "time"

// Op is the kind of write a change records.
type Op int

// The ops, numbered as on the wire.
const (
	OpCreate Op = 1
	OpUpdate Op = 2 // confirm or note
	OpDelete Op = 3 // cancel
)

// Change is one committed write, as the change feed delivers it.
type Change struct {
	Seq         uint64 // gapless and increasing in commit order, assigned after commit
	Op          Op
	Reservation *Reservation // the row as of the change; for OpDelete the row as removed
	CommittedAt time.Time
}
