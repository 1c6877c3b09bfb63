package jetstream

import (
	"context"

	"reservation"
)

// What the external tests reach inside the exporter.

// Break makes o's exporter wrong on purpose: without Nats-Msg-Id, without
// Nats-Expected-Last-Sequence (and without the check of the acknowledged sequence), or
// without the fingerprint check.
func Break(o *Options, msgID, expectedSeq, fingerprint bool) {
	o.brk = 0
	if msgID {
		o.brk |= breakMsgID
	}
	if expectedSeq {
		o.brk |= breakExpectedSeq
	}
	if fingerprint {
		o.brk |= breakFingerprint
	}
}

// ErrResync is errResync.
var ErrResync = errResync

// PublishOnce sends cs once, connecting first if needed, and returns how many were acknowledged.
func (x *Exporter) PublishOnce(ctx context.Context, cs []*reservation.Change) (int, error) {
	if err := x.connect(); err != nil {
		return 0, err
	}
	return x.publishOnce(ctx, cs)
}

// SetBreak is Break on a running exporter's options; call it only while it does not run.
func (x *Exporter) SetBreak(msgID, expectedSeq, fingerprint bool) {
	Break(&x.opts, msgID, expectedSeq, fingerprint)
}

// CloseConn closes the connection PublishOnce opened.
func (x *Exporter) CloseConn() {
	if x.nc != nil {
		x.nc.Close()
	}
}
