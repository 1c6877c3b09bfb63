// Package queue will turn the rows of reservation_changes into the ordered, resumable feed that
// Listen subscribers tail: a sequencer elected across replicas, a poller and the fan-out. Until
// then every write already records its change, in its own transaction (see repo).
package queue
