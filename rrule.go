package reservation

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Recurrence rules: the subset of RFC 5545's RRULE that ReserveSeries reads, parsed by
// ParseRule and expanded by Rule.Expand. The rule parts are FREQ (DAILY, WEEKLY or MONTHLY),
// INTERVAL, COUNT or UNTIL (not both), BYDAY (weekly: MO to SU; monthly: each with an optional
// ordinal, 1MO for the first Monday, -1FR for the last Friday; daily: MO to SU as a filter),
// BYMONTHDAY (1 to 31 and -31 to -1; monthly, or daily as a filter) and WKST.
//
// Expansion follows RFC 5545, in the time zone given:
//   - The first occurrence is the start given (DTSTART), and counts towards COUNT. The others
//     are the rule's instances after it, each at the first's local wall-clock time, so a
//     weekly 09:00 stays 09:00 local when the zone's UTC offset changes.
//   - A local time that does not exist (the hour skipped when clocks go forward) is moved
//     forward by the length of the gap: it is read with the UTC offset in effect before the
//     gap (02:30 on a night that jumps from 02:00 to 03:00 is 03:30). A local time that occurs
//     twice (when clocks go back) is its first instance, the one with the offset before.
//   - An instance on a day the month lacks (BYMONTHDAY=31 in April, the 30th of February, a
//     fifth Monday) is skipped, not moved.
//   - UNTIL is inclusive. Exdates leave out the occurrences whose start is that instant; they
//     do not make COUNT produce more.

// Frequency is a rule's FREQ.
type Frequency int

// The frequencies ParseRule reads.
const (
	Daily Frequency = iota + 1
	Weekly
	Monthly
)

func (f Frequency) String() string {
	switch f {
	case Daily:
		return "DAILY"
	case Weekly:
		return "WEEKLY"
	case Monthly:
		return "MONTHLY"
	}
	return fmt.Sprintf("Frequency(%d)", int(f))
}

// WeekdayNum is a BYDAY value: a weekday, with an ordinal within the month (1 the first, -1
// the last) or 0 for every one.
type WeekdayNum struct {
	Ordinal int
	Day     time.Weekday
}

// Rule is a parsed recurrence rule.
type Rule struct {
	Freq     Frequency
	Interval int       // at least 1
	Count    int       // 0: none
	Until    time.Time // zero: none
	ByDay    []WeekdayNum
	// ByMonthDay are days of the month: 1 to 31, or -31 to -1 counting from its last day.
	ByMonthDay []int
	WeekStart  time.Weekday // WKST, Monday unless given
}

// maxRuleLen bounds the text of a rule: the subset needs far less.
const maxRuleLen = 1024

var weekdays = map[string]time.Weekday{
	"SU": time.Sunday, "MO": time.Monday, "TU": time.Tuesday, "WE": time.Wednesday,
	"TH": time.Thursday, "FR": time.Friday, "SA": time.Saturday,
}

// ParseRule reads an RRULE value ("FREQ=WEEKLY;COUNT=10;BYDAY=MO,WE"), with or without the
// "RRULE:" prefix, in the subset this file describes. The error says which part is wrong.
func ParseRule(s string) (Rule, error) {
	if len(s) > maxRuleLen {
		return Rule{}, fmt.Errorf("must be at most %d bytes, got %d", maxRuleLen, len(s))
	}
	text := strings.TrimSpace(s)
	if len(text) >= 6 && strings.EqualFold(text[:6], "RRULE:") {
		text = text[6:]
	}
	if text == "" {
		return Rule{}, fmt.Errorf("is required (an RFC 5545 RRULE such as FREQ=WEEKLY;COUNT=10)")
	}
	r := Rule{Interval: 1, WeekStart: time.Monday}
	seen := map[string]bool{}
	for _, part := range strings.Split(text, ";") {
		name, value, ok := strings.Cut(part, "=")
		name = strings.ToUpper(strings.TrimSpace(name))
		value = strings.ToUpper(strings.TrimSpace(value))
		if !ok || name == "" || value == "" {
			return Rule{}, fmt.Errorf("part %q is not NAME=VALUE", clipText(part))
		}
		if seen[name] {
			return Rule{}, fmt.Errorf("%s is given twice", clipText(name))
		}
		seen[name] = true
		var err error
		switch name {
		case "FREQ":
			switch value {
			case "DAILY":
				r.Freq = Daily
			case "WEEKLY":
				r.Freq = Weekly
			case "MONTHLY":
				r.Freq = Monthly
			default:
				err = fmt.Errorf("FREQ must be DAILY, WEEKLY or MONTHLY, got %q", clipText(value))
			}
		case "INTERVAL":
			r.Interval, err = positive(name, value)
		case "COUNT":
			r.Count, err = positive(name, value)
		case "UNTIL":
			r.Until, err = parseUntil(value)
		case "BYDAY":
			r.ByDay, err = parseByDay(value)
		case "BYMONTHDAY":
			r.ByMonthDay, err = parseByMonthDay(value)
		case "WKST":
			d, ok := weekdays[value]
			if !ok {
				err = fmt.Errorf("WKST must be one of MO, TU, WE, TH, FR, SA, SU, got %q", clipText(value))
			}
			r.WeekStart = d
		default:
			err = fmt.Errorf("%s is not supported: the parts are FREQ, INTERVAL, COUNT, UNTIL, BYDAY, BYMONTHDAY and WKST", clipText(name))
		}
		if err != nil {
			return Rule{}, err
		}
	}
	switch {
	case r.Freq == 0:
		return Rule{}, fmt.Errorf("FREQ is required (DAILY, WEEKLY or MONTHLY)")
	case r.Count > 0 && !r.Until.IsZero():
		return Rule{}, fmt.Errorf("COUNT and UNTIL must not both be given")
	case r.Freq == Weekly && len(r.ByMonthDay) > 0:
		return Rule{}, fmt.Errorf("BYMONTHDAY must not be given with FREQ=WEEKLY")
	}
	if r.Freq != Monthly {
		for _, d := range r.ByDay {
			if d.Ordinal != 0 {
				return Rule{}, fmt.Errorf("BYDAY takes an ordinal (such as 1MO or -1FR) only with FREQ=MONTHLY, got one with FREQ=%s", r.Freq)
			}
		}
	}
	return r, nil
}

// positive reads the value of part name, a whole number from 1 to 100000.
func positive(name, value string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil || n < 1 || n > 100_000 {
		return 0, fmt.Errorf("%s must be a whole number from 1 to 100000, got %q", name, clipText(value))
	}
	return n, nil
}

// parseUntil reads UNTIL: a UTC date-time (20261231T235959Z), as RFC 5545 requires with a time
// zone, or a date (20261231, through the end of that day in UTC). A local date-time without Z
// is refused: which zone it is in would be a guess.
func parseUntil(value string) (time.Time, error) {
	if t, err := time.Parse("20060102T150405Z", value); err == nil {
		return t, nil
	}
	if t, err := time.Parse("20060102", value); err == nil {
		return t.Add(24*time.Hour - time.Microsecond), nil
	}
	return time.Time{}, fmt.Errorf("UNTIL must be a UTC date-time such as 20261231T235959Z, or a date such as 20261231, got %q", clipText(value))
}

// parseByDay reads BYDAY: weekdays, each with an optional ordinal from -5 to 5 (not 0).
func parseByDay(value string) ([]WeekdayNum, error) {
	var out []WeekdayNum
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		bad := fmt.Errorf("BYDAY must list weekdays MO to SU, each with an optional ordinal such as 1MO or -1FR, got %q", clipText(v))
		if len(v) < 2 {
			return nil, bad
		}
		day, ok := weekdays[v[len(v)-2:]]
		if !ok {
			return nil, bad
		}
		n := 0
		if num := v[:len(v)-2]; num != "" {
			var err error
			if n, err = strconv.Atoi(num); err != nil || n == 0 || n < -5 || n > 5 {
				return nil, fmt.Errorf("BYDAY ordinal must be from -5 to 5 and not 0, got %q", clipText(v))
			}
		}
		w := WeekdayNum{n, day}
		if !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out, nil
}

// parseByMonthDay reads BYMONTHDAY: days from 1 to 31 or -31 to -1.
func parseByMonthDay(value string) ([]int, error) {
	var out []int
	for _, v := range strings.Split(value, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n == 0 || n < -31 || n > 31 {
			return nil, fmt.Errorf("BYMONTHDAY must list days from 1 to 31 or -31 to -1, got %q", clipText(v))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// ErrTooMany is wrapped by Expand's error when a rule makes more occurrences than allowed.
var ErrTooMany = errors.New("too many occurrences")

// ErrNoFurther is wrapped by Expand's error when a rule that still owes occurrences (by COUNT,
// or having neither COUNT nor UNTIL) makes none for MaxRuleGap.
var ErrNoFurther = errors.New("the rule makes no further occurrence")

// MaxRuleGap bounds how far, in calendar days, Expand looks past an occurrence for the next
// one: about 10 years. A rule such as FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1 (a fifth Monday that
// is the first of its month) never matches, and without this bound the expansion would test
// every day up to the year 9999 for it: seconds of CPU for one request. No rule of the subset
// ParseRule reads that matches at all leaves a gap this long, except through an INTERVAL
// whose periods are this long themselves, which the bound also refuses.
const MaxRuleGap = 3653

// Expand returns the starts of the occurrences of the rule whose first occurrence starts at
// start, in the zone loc, in order, leaving out those that start at one of exdates. More than
// limit of them (after exdates) is an error wrapping ErrTooMany, and so is a rule with neither
// COUNT nor UNTIL. A rule that owes more occurrences and makes none in the MaxRuleGap days
// after its last is an error wrapping ErrNoFurther. Occurrences past the years a reservation
// can be stored in (9999) end the expansion.
func (r Rule) Expand(start time.Time, loc *time.Location, exdates []time.Time, limit int) ([]time.Time, error) {
	out, _, err := r.expand(start, loc, exdates, limit)
	return out, err
}

// expand is Expand, and also returns the number of candidate days it examined: the work done,
// which MaxRuleGap and limit bound (tests assert it).
func (r Rule) expand(start time.Time, loc *time.Location, exdates []time.Time, limit int) (out []time.Time, examined int, err error) {
	local := start.In(loc)
	hh, mm, ss, ns := local.Hour(), local.Minute(), local.Second(), local.Nanosecond()
	first := civil(local.Year(), local.Month(), local.Day())
	excluded := func(t time.Time) bool {
		return slices.ContainsFunc(exdates, func(x time.Time) bool { return x.Equal(t) })
	}
	made := 0 // instances of the rule, exdates included: what COUNT counts
	add := func(day time.Time) (done bool, err error) {
		t := localTime(day.Year(), day.Month(), day.Day(), hh, mm, ss, ns, loc)
		if made == 0 {
			t = start // the first is as given, even if the rule would not make it
		}
		if !r.Until.IsZero() && t.After(r.Until) && made > 0 {
			return true, nil
		}
		made++
		if !excluded(t) {
			if len(out) == limit {
				if r.Count == 0 && r.Until.IsZero() {
					return true, fmt.Errorf("%w: the rule has neither COUNT nor UNTIL, so it repeats past the %d occurrences allowed; give one", ErrTooMany, limit)
				}
				return true, fmt.Errorf("%w: the rule makes more than the %d occurrences allowed", ErrTooMany, limit)
			}
			out = append(out, t)
		}
		return r.Count > 0 && made == r.Count, nil
	}
	if done, err := add(first); done || err != nil {
		return out, 1, err
	}
	last := civil(9999, time.December, 31)
	// A period starting after this has no instance UNTIL allows (a day's local time is within
	// a day of its UTC date, and two days leave room for any zone's offset).
	var untilDay time.Time
	if !r.Until.IsZero() {
		untilDay = civil(r.Until.Year(), r.Until.Month(), r.Until.Day()).AddDate(0, 0, 2)
	}
	previous := first // the date of the last instance made
	for period := 0; ; period++ {
		days, beyond, n := r.period(first, period)
		examined += n
		switch {
		case beyond.After(last):
			return out, examined, nil
		case !untilDay.IsZero() && beyond.After(untilDay):
			return out, examined, nil
		case beyond.Sub(previous) > MaxRuleGap*24*time.Hour:
			return out, examined, fmt.Errorf("%w after %s: none in the %d days (about 10 years) after it, %d of %s made",
				ErrNoFurther, previous.Format(time.DateOnly), MaxRuleGap, made, r.owed())
		}
		for _, d := range days {
			if !d.After(first) {
				continue // DTSTART is the first; instances before it are not in the set
			}
			if d.After(last) {
				return out, examined, nil
			}
			if done, err := add(d); done || err != nil {
				return out, examined, err
			}
			previous = d
		}
	}
}

// owed says how many occurrences the rule asks for, for an error message.
func (r Rule) owed() string {
	if r.Count > 0 {
		return fmt.Sprintf("COUNT=%d", r.Count)
	}
	return "an unbounded rule"
}

// civil is a calendar date, as midnight UTC: arithmetic on it knows no DST.
func civil(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// period returns the dates of the rule's instances in period n (0 is the one holding first),
// in order, the first date of the period, and how many days it examined.
func (r Rule) period(first time.Time, n int) (days []time.Time, start time.Time, examined int) {
	step := n * r.Interval
	switch r.Freq {
	case Daily:
		d := first.AddDate(0, 0, step)
		if r.matchesDay(d) && r.matchesMonthDay(d) {
			return []time.Time{d}, d, 1
		}
		return nil, d, 1
	case Weekly:
		back := (int(first.Weekday()) - int(r.WeekStart) + 7) % 7
		weekStart := first.AddDate(0, 0, -back+7*step)
		for i := range 7 {
			d := weekStart.AddDate(0, 0, i)
			if len(r.ByDay) == 0 && d.Weekday() == first.Weekday() || r.matchesDay(d) && len(r.ByDay) > 0 {
				days = append(days, d)
			}
		}
		return days, weekStart, 7
	}
	// Monthly: the first of the month step months on, counted from first's month (not with
	// AddDate on the day, which would carry the 31st into the next month).
	monthStart := civil(first.Year(), first.Month()+time.Month(step), 1)
	length := monthStart.AddDate(0, 1, -1).Day()
	for day := 1; day <= length; day++ {
		d := monthStart.AddDate(0, 0, day-1)
		if r.monthlyInstance(d, first, length) {
			days = append(days, d)
		}
	}
	return days, monthStart, length
}

// monthlyInstance reports whether day d of a month of length days is an instance of a
// monthly rule whose first occurrence is on first.
func (r Rule) monthlyInstance(d, first time.Time, length int) bool {
	switch {
	case len(r.ByMonthDay) == 0 && len(r.ByDay) == 0:
		return d.Day() == first.Day() // a month without that day has no instance
	case len(r.ByMonthDay) > 0 && !r.matchesMonthDay(d):
		return false
	case len(r.ByDay) == 0:
		return true
	}
	for _, w := range r.ByDay {
		if d.Weekday() != w.Day {
			continue
		}
		nth, fromEnd := (d.Day()-1)/7+1, -((length-d.Day())/7 + 1)
		if w.Ordinal == 0 || w.Ordinal == nth || w.Ordinal == fromEnd {
			return true
		}
	}
	return false
}

// matchesDay reports whether BYDAY (without ordinals) allows the date; no BYDAY allows all.
func (r Rule) matchesDay(d time.Time) bool {
	return len(r.ByDay) == 0 || slices.ContainsFunc(r.ByDay, func(w WeekdayNum) bool { return w.Day == d.Weekday() })
}

// matchesMonthDay reports whether BYMONTHDAY allows the date; no BYMONTHDAY allows all.
func (r Rule) matchesMonthDay(d time.Time) bool {
	if len(r.ByMonthDay) == 0 {
		return true
	}
	length := civil(d.Year(), d.Month()+1, 0).Day()
	for _, md := range r.ByMonthDay {
		if md == d.Day() || md < 0 && length+1+md == d.Day() {
			return true
		}
	}
	return false
}

// localTime is the instant of a local date and wall-clock time in loc, as RFC 5545 reads one:
// a time in a gap (clocks going forward) is read with the offset before the gap, so it is
// moved forward by the gap's length; a time that occurs twice is the first of them. (time.Date
// leaves both choices open.)
func localTime(y int, m time.Month, d, hh, mm, ss, ns int, loc *time.Location) time.Time {
	wall := time.Date(y, m, d, hh, mm, ss, ns, time.UTC) // the wall-clock reading, as if UTC
	offset := func(t time.Time) time.Duration {
		_, o := t.In(loc).Zone()
		return time.Duration(o) * time.Second
	}
	// The offsets in effect a day before and a day after: zones change offset at most once
	// within two days.
	before, after := offset(wall.Add(-24*time.Hour)), offset(wall.Add(24*time.Hour))
	early, late := wall.Add(-before), wall.Add(-after)
	earlyOK, lateOK := offset(early) == before, offset(late) == after
	switch {
	case earlyOK && lateOK:
		if late.Before(early) {
			return late.In(loc)
		}
		return early.In(loc)
	case lateOK:
		return late.In(loc)
	}
	return early.In(loc) // valid, or in the gap: the offset before it
}
