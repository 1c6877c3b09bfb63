package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// Times on the command line are read in the zone of --tz (default: the local zone):
//
//	2030-05-01                 midnight that day
//	2030-05-01 14:00           (also 2030-05-01T14:00, and with :05 seconds)
//	2030-05-01T14:00:00+02:00  RFC 3339: its own offset wins over --tz
//	now, +1h, -30m, +1d        relative to now
//
// Durations are Go's (90m, 2h30m, 45s) with d (24 hours) and w (7 days) added: 1d, 2w, 1d12h.

const timeForms = `a date (2030-05-01), a date and time ("2030-05-01 14:00"), RFC 3339, now, or now +/- a duration (+1h, -30m, +1d)`

// localForms are the layouts without a zone, read in --tz.
var localForms = []string{"2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02T15:04", "2006-01-02T15:04:05"}

// parseTime reads a time flag; "" is the zero time (not given).
func (c *cli) parseTime(flagName, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return time.Time{}, nil
	case s == "now":
		return c.now, nil
	case strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-"):
		d, err := parseDuration(s)
		if err != nil {
			return time.Time{}, usagef("--%s %q: want %s", flagName, s, timeForms)
		}
		return c.now.Add(d), nil
	}
	for _, layout := range localForms {
		if t, err := time.ParseInLocation(layout, s, c.tz); err == nil {
			return t, nil
		}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.Time{}, usagef("--%s %q: want %s", flagName, s, timeForms)
}

var (
	errDuration      = errors.New("want a duration like 90m, 2h30m, 1d or 2w")
	errDurationRange = errors.New("duration out of range")
)

var durationPart = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h|d|w)`)

// parseDuration reads a Go duration, with d for 24 hours and w for 7 days.
func parseDuration(s string) (time.Duration, error) {
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg, s = s[0] == '-', s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s == "" {
		return 0, errDuration
	}
	var total time.Duration
	for s != "" {
		m := durationPart.FindStringSubmatch(s)
		if m == nil {
			return 0, errDuration
		}
		s = s[len(m[0]):]
		var d time.Duration
		switch m[2] {
		case "d", "w":
			n, err := strconv.ParseFloat(m[1], 64)
			days := 1.0
			if m[2] == "w" {
				days = 7
			}
			if err != nil || n*days > 100_000 {
				return 0, errDurationRange
			}
			d = time.Duration(n * days * float64(24*time.Hour))
		default:
			var err error
			if d, err = time.ParseDuration(m[0]); err != nil {
				return 0, errDurationRange
			}
		}
		total += d
	}
	if neg {
		total = -total
	}
	return total, nil
}

// formatDuration spells d in whole seconds, days first: 6d21h, 1h30m, 45s. It reads back
// with parseDuration.
func formatDuration(d time.Duration) string {
	d = d.Round(time.Second)
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if d < 0 {
		b.WriteByte('-')
		d = -d
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	return b.String()
}

// formatTime shows a time in --tz with the zone's name, to the minute when it has no seconds:
// "2030-03-01 15:00 CET", "2030-03-01 15:00:07 CET".
func (c *cli) formatTime(t time.Time) string {
	t = t.In(c.tz).Truncate(time.Second)
	if t.Second() == 0 {
		return t.Format("2006-01-02 15:04 MST")
	}
	return t.Format("2006-01-02 15:04:05 MST")
}

func (c *cli) formatTimestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return c.formatTime(ts.AsTime())
}

// The server writes times (RFC 3339) and durations (Go's 24h0m0s) into its messages; these
// rewrite them as the rest of the output shows them.
var (
	rfc3339InText  = regexp.MustCompile(`\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`)
	durationInText = regexp.MustCompile(`\b\d+h\d+m[0-9.]+s\b|\b\d+m[0-9.]+s\b`)
)

func (c *cli) localize(msg string) string {
	msg = rfc3339InText.ReplaceAllStringFunc(msg, func(s string) string {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return s
		}
		return c.formatTime(t)
	})
	return durationInText.ReplaceAllStringFunc(msg, func(s string) string {
		d, err := time.ParseDuration(s)
		if err != nil {
			return s
		}
		return formatDuration(d)
	})
}

// durationFlag is a flag holding a duration written as parseDuration reads it.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0"
	}
	return formatDuration(*f.d)
}

func (durationFlag) Type() string { return "duration" }

// timeFlag is a flag holding a time as typed, read once --tz is known; its type shows in help.
type timeFlag struct{ s *string }

func (f timeFlag) Set(s string) error { *f.s = s; return nil }
func (f timeFlag) String() string {
	if f.s == nil {
		return ""
	}
	return *f.s
}
func (timeFlag) Type() string { return "time" }
