package reservation

// Op is the kind of write a change records.
type Op int

// The ops, numbered as on the wire.
const (
	OpCreate Op = 1
	OpUpdate Op = 2 // confirm or note
	OpDelete Op = 3 // cancel
)
