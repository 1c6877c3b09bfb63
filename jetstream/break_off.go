//go:build !exportbreak

package jetstream

// testBreak is no breakage: only a test build (-tags exportbreak) can break the exporter.
func testBreak() breakage { return 0 }
