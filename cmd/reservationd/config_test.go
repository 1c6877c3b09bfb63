package main

import (
	"flag"
	"slices"
	"strings"
	"testing"
)

// TestValidateNamesEveryBadSetting: one error names each bad setting, not only the first.
func TestValidateNamesEveryBadSetting(t *testing.T) {
	_, err := parseFlags([]string{"--reap-interval", "0s", "--feed-buffer", "-1", "--cache-entries", "-1", "--redis-mode", "ring", "--hold-min", "3h", "--hold-max", "2h", "--history-retention", "0s"})
	if err == nil {
		t.Fatal("bad settings were accepted")
	}
	for _, want := range []string{"--reap-interval (RESERVATION_REAP_INTERVAL)", "--feed-buffer", "--cache-entries", "--redis-mode", "--hold-min", "--history-retention"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

// TestDefaultConfigIsValid: the flags' defaults are the packages' and pass Validate.
func TestDefaultConfigIsValid(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"max-duration": "8784h0m0s", "free-window-max": "8784h0m0s", "group-commit": "64",
		"cache-entries": "100000", "feed-buffer": "4096", "lock-wait": "5s", "lock-ttl": "2s", "feed-poll": "20ms", "feed-stamp-gap": "10ms",
		"history-retention": "9600h0m0s", "feed-retention": "168h0m0s"} // 400 days of history, 7 of feed
	c.flags().VisitAll(func(f *flag.Flag) {
		if w, ok := want[f.Name]; ok && f.DefValue != w {
			t.Errorf("--%s defaults to %s, want %s", f.Name, f.DefValue, w)
		}
	})
}

func TestUnknownEnvironment(t *testing.T) {
	got := unknownEnv([]string{"RESERVATION_LOCK=local", "RESERVATION_LOCKWAIT=2s", "RESERVATION_REDIS_PASSWORD=x",
		"RESERVATION_TEST_MYSQL_DSN=y", "HOME=/root", "RESERVATION_GRPC_ADRR=:1"})
	if want := []string{"RESERVATION_LOCKWAIT", "RESERVATION_GRPC_ADRR"}; !slices.Equal(got, want) {
		t.Errorf("unknownEnv = %q, want %q", got, want)
	}
}
