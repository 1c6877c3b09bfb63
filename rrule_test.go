package reservation

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// at reads a local time "2006-01-02 15:04" in loc with time.Date (fine away from DST changes).
func at(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func expand(t *testing.T, rule string, start time.Time, loc *time.Location, exdates ...time.Time) []time.Time {
	t.Helper()
	r, err := ParseRule(rule)
	if err != nil {
		t.Fatalf("ParseRule(%q): %v", rule, err)
	}
	got, err := r.Expand(start, loc, exdates, DefaultSeriesMax)
	if err != nil {
		t.Fatalf("Expand(%q): %v", rule, err)
	}
	return got
}

// sameDates checks got against local dates (the time of day being the start's) in loc.
func sameDates(t *testing.T, rule string, got []time.Time, loc *time.Location, clock string, dates ...string) {
	t.Helper()
	var want []string
	for _, d := range dates {
		want = append(want, d+" "+clock)
	}
	var have []string
	for _, g := range got {
		have = append(have, g.In(loc).Format("2006-01-02 15:04"))
	}
	if strings.Join(have, ",") != strings.Join(want, ",") {
		t.Errorf("%s:\n got %v\nwant %v", rule, have, want)
	}
}

// TestExpandRFC5545 checks the examples of RFC 5545 section 3.8.5.3 that fit the subset, in
// America/New_York as the RFC writes them (expected dates copied from the RFC).
func TestExpandRFC5545(t *testing.T) {
	ny := zone(t, "America/New_York")
	for _, c := range []struct {
		rule, start string
		exdateFirst bool
		dates       []string
	}{
		{"FREQ=DAILY;COUNT=10", "1997-09-02", false, []string{"1997-09-02", "1997-09-03", "1997-09-04", "1997-09-05", "1997-09-06", "1997-09-07", "1997-09-08", "1997-09-09", "1997-09-10", "1997-09-11"}},
		{"FREQ=DAILY;INTERVAL=10;COUNT=5", "1997-09-02", false, []string{"1997-09-02", "1997-09-12", "1997-09-22", "1997-10-02", "1997-10-12"}},
		{"FREQ=WEEKLY;COUNT=10", "1997-09-02", false, []string{"1997-09-02", "1997-09-09", "1997-09-16", "1997-09-23", "1997-09-30", "1997-10-07", "1997-10-14", "1997-10-21", "1997-10-28", "1997-11-04"}},
		{"FREQ=WEEKLY;UNTIL=19971007T000000Z;WKST=SU;BYDAY=TU,TH", "1997-09-02", false, []string{"1997-09-02", "1997-09-04", "1997-09-09", "1997-09-11", "1997-09-16", "1997-09-18", "1997-09-23", "1997-09-25", "1997-09-30", "1997-10-02"}},
		{"FREQ=WEEKLY;INTERVAL=2;UNTIL=19971224T000000Z;WKST=SU;BYDAY=MO,WE,FR", "1997-09-01", false, []string{
			"1997-09-01", "1997-09-03", "1997-09-05", "1997-09-15", "1997-09-17", "1997-09-19", "1997-09-29", "1997-10-01", "1997-10-03",
			"1997-10-13", "1997-10-15", "1997-10-17", "1997-10-27", "1997-10-29", "1997-10-31", "1997-11-10", "1997-11-12", "1997-11-14",
			"1997-11-24", "1997-11-26", "1997-11-28", "1997-12-08", "1997-12-10", "1997-12-12", "1997-12-22"}},
		{"FREQ=WEEKLY;INTERVAL=2;COUNT=8;WKST=SU;BYDAY=TU,TH", "1997-09-02", false, []string{"1997-09-02", "1997-09-04", "1997-09-16", "1997-09-18", "1997-09-30", "1997-10-02", "1997-10-14", "1997-10-16"}},
		{"FREQ=MONTHLY;COUNT=10;BYDAY=1FR", "1997-09-05", false, []string{"1997-09-05", "1997-10-03", "1997-11-07", "1997-12-05", "1998-01-02", "1998-02-06", "1998-03-06", "1998-04-03", "1998-05-01", "1998-06-05"}},
		{"FREQ=MONTHLY;INTERVAL=2;COUNT=10;BYDAY=1SU,-1SU", "1997-09-07", false, []string{"1997-09-07", "1997-09-28", "1997-11-02", "1997-11-30", "1998-01-04", "1998-01-25", "1998-03-01", "1998-03-29", "1998-05-03", "1998-05-31"}},
		{"FREQ=MONTHLY;COUNT=6;BYDAY=-2MO", "1997-09-22", false, []string{"1997-09-22", "1997-10-20", "1997-11-17", "1997-12-22", "1998-01-19", "1998-02-16"}},
		{"FREQ=MONTHLY;COUNT=10;BYMONTHDAY=2,15", "1997-09-02", false, []string{"1997-09-02", "1997-09-15", "1997-10-02", "1997-10-15", "1997-11-02", "1997-11-15", "1997-12-02", "1997-12-15", "1998-01-02", "1998-01-15"}},
		{"FREQ=MONTHLY;COUNT=10;BYMONTHDAY=1,-1", "1997-09-30", false, []string{"1997-09-30", "1997-10-01", "1997-10-31", "1997-11-01", "1997-11-30", "1997-12-01", "1997-12-31", "1998-01-01", "1998-01-31", "1998-02-01"}},
		// "Every Tuesday, every other month" (forever in the RFC; its first nine here).
		{"FREQ=MONTHLY;INTERVAL=2;COUNT=9;BYDAY=TU", "1997-09-02", false, []string{"1997-09-02", "1997-09-09", "1997-09-16", "1997-09-23", "1997-09-30", "1997-11-04", "1997-11-11", "1997-11-18", "1997-11-25"}},
		// "Every Friday the 13th": the RFC leaves DTSTART out with an EXDATE. COUNT counts it.
		{"FREQ=MONTHLY;COUNT=6;BYDAY=FR;BYMONTHDAY=13", "1997-09-02", true, []string{"1998-02-13", "1998-03-13", "1998-11-13", "1999-08-13", "2000-10-13"}},
		// "FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5": February has no 30th, which is skipped.
		{"FREQ=MONTHLY;BYMONTHDAY=15,30;COUNT=5", "2007-01-15", false, []string{"2007-01-15", "2007-01-30", "2007-02-15", "2007-03-15", "2007-03-30"}},
	} {
		start := at(t, ny, c.start+" 09:00")
		var ex []time.Time
		if c.exdateFirst {
			ex = append(ex, start)
		}
		sameDates(t, c.rule, expand(t, c.rule, start, ny, ex...), ny, "09:00", c.dates...)
	}
}

// TestExpandSkipsInvalidDays: the 31st and the 30th of February are skipped, not moved.
func TestExpandSkipsInvalidDays(t *testing.T) {
	utc := time.UTC
	sameDates(t, "31st", expand(t, "FREQ=MONTHLY;COUNT=5", at(t, utc, "2026-01-31 10:00"), utc), utc, "10:00",
		"2026-01-31", "2026-03-31", "2026-05-31", "2026-07-31", "2026-08-31")
	sameDates(t, "30th", expand(t, "FREQ=MONTHLY;BYMONTHDAY=30;COUNT=4", at(t, utc, "2026-01-30 10:00"), utc), utc, "10:00",
		"2026-01-30", "2026-03-30", "2026-04-30", "2026-05-30")
	sameDates(t, "fifth Monday", expand(t, "FREQ=MONTHLY;BYDAY=5MO;COUNT=3", at(t, utc, "2026-03-30 10:00"), utc), utc, "10:00",
		"2026-03-30", "2026-06-29", "2026-08-31")
	sameDates(t, "last day", expand(t, "FREQ=MONTHLY;BYMONTHDAY=-1;COUNT=4", at(t, utc, "2028-01-31 10:00"), utc), utc, "10:00",
		"2028-01-31", "2028-02-29", "2028-03-31", "2028-04-30")
	sameDates(t, "daily filter", expand(t, "FREQ=DAILY;BYDAY=MO,FR;COUNT=4", at(t, utc, "2026-12-04 10:00"), utc), utc, "10:00",
		"2026-12-04", "2026-12-07", "2026-12-11", "2026-12-14")
}

// TestExpandKeepsLocalTimeAcrossDST: a weekly 09:00 stays 09:00 local over the DST changes of
// Europe/Paris (last Sundays of March and October: 29 March and 25 October 2026) and
// America/New_York (second Sunday of March, first of November: 8 March and 1 November 2026),
// its UTC time moving by the hour the offset changes.
func TestExpandKeepsLocalTimeAcrossDST(t *testing.T) {
	for _, c := range []struct {
		zone, start string
		utc         []string
	}{
		{"Europe/Paris", "2026-03-23 09:00", []string{"2026-03-23T08:00:00Z", "2026-03-30T07:00:00Z", "2026-04-06T07:00:00Z"}},
		{"Europe/Paris", "2026-10-19 09:00", []string{"2026-10-19T07:00:00Z", "2026-10-26T08:00:00Z", "2026-11-02T08:00:00Z"}},
		{"America/New_York", "2026-03-05 09:00", []string{"2026-03-05T14:00:00Z", "2026-03-12T13:00:00Z", "2026-03-19T13:00:00Z"}},
		{"America/New_York", "2026-10-29 09:00", []string{"2026-10-29T13:00:00Z", "2026-11-05T14:00:00Z", "2026-11-12T14:00:00Z"}},
	} {
		loc := zone(t, c.zone)
		got := expand(t, "FREQ=WEEKLY;COUNT=3", at(t, loc, c.start), loc)
		for i, g := range got {
			if g.UTC().Format(time.RFC3339) != c.utc[i] || g.In(loc).Hour() != 9 {
				t.Errorf("%s from %s: occurrence %d is %s (%s local), want %s at 09:00 local", c.zone, c.start, i, g.UTC().Format(time.RFC3339), g.In(loc).Format("15:04"), c.utc[i])
			}
		}
		if len(got) != 3 {
			t.Errorf("%s: %d occurrences, want 3", c.zone, len(got))
		}
	}
}

// TestExpandGapAndAmbiguity: a daily 02:30 (Paris) or 01:30/02:30 (New York) over the nights
// clocks change. In the gap the time moves forward by the gap (RFC 5545: the offset before
// the gap); a time that occurs twice is its first instance (the summer offset).
func TestExpandGapAndAmbiguity(t *testing.T) {
	for _, c := range []struct {
		name, zone, start string
		utc               []string
	}{
		{"Paris gap", "Europe/Paris", "2026-03-28 02:30", []string{"2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z"}},
		{"New York gap", "America/New_York", "2026-03-07 02:30", []string{"2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"}},
		{"Paris twice", "Europe/Paris", "2026-10-24 02:30", []string{"2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"}},
		{"New York twice", "America/New_York", "2026-10-31 01:30", []string{"2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
	} {
		loc := zone(t, c.zone)
		got := expand(t, "FREQ=DAILY;COUNT=3", at(t, loc, c.start), loc)
		var have []string
		for _, g := range got {
			have = append(have, g.UTC().Format(time.RFC3339))
		}
		if strings.Join(have, ",") != strings.Join(c.utc, ",") {
			t.Errorf("%s:\n got %v\nwant %v", c.name, have, c.utc)
		}
	}
	// The gap's occurrence reads 03:30 local.
	paris := zone(t, "Europe/Paris")
	if got := localTime(2026, time.March, 29, 2, 30, 0, 0, paris); got.Format("15:04 -07:00") != "03:30 +02:00" {
		t.Errorf("02:30 in the Paris gap = %s, want 03:30 +02:00", got.Format("15:04 -07:00"))
	}
}

func TestExpandExdatesAndBounds(t *testing.T) {
	utc := time.UTC
	start := at(t, utc, "2026-06-01 10:00")
	got := expand(t, "FREQ=DAILY;COUNT=4", start, utc, start.AddDate(0, 0, 1), start.AddDate(0, 0, 1).Add(time.Minute))
	sameDates(t, "exdate", got, utc, "10:00", "2026-06-01", "2026-06-03", "2026-06-04")
	// UNTIL is inclusive.
	sameDates(t, "until", expand(t, "FREQ=DAILY;UNTIL=20260603T100000Z", start, utc), utc, "10:00", "2026-06-01", "2026-06-02", "2026-06-03")
	sameDates(t, "until date", expand(t, "FREQ=DAILY;UNTIL=20260602", start, utc), utc, "10:00", "2026-06-01", "2026-06-02")

	for _, c := range []struct {
		rule    string
		limit   int
		ok      bool
		message string
	}{
		{"FREQ=DAILY;COUNT=500", 500, true, ""},
		{"FREQ=DAILY;COUNT=501", 500, false, "more than the 500"},
		{"FREQ=WEEKLY", 500, false, "neither COUNT nor UNTIL"},
		{"FREQ=DAILY;UNTIL=20300101T000000Z", 500, false, "more than the 500"},
	} {
		r, err := ParseRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.Expand(start, utc, nil, c.limit)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: %v", c.rule, err)
		case !c.ok && (!errors.Is(err, ErrTooMany) || !strings.Contains(err.Error(), c.message)):
			t.Errorf("%s: error %v, want ErrTooMany saying %q", c.rule, err, c.message)
		case c.ok && c.rule == "FREQ=DAILY;COUNT=500" && len(got) != 500:
			t.Errorf("%s: %d occurrences", c.rule, len(got))
		}
	}
}

// TestExpandStopsWithoutFurtherOccurrence: a rule that owes occurrences and makes none for
// MaxRuleGap days is ErrNoFurther after examining about that many days, not every day to the
// year 9999; a rule whose UNTIL passes stops there, without error, as soon as its periods
// pass it. Counts of days examined, not times.
func TestExpandStopsWithoutFurtherOccurrence(t *testing.T) {
	utc := time.UTC
	feb := at(t, utc, "2026-02-10 10:00")
	mon := at(t, utc, "2026-06-01 10:00") // a Monday, the first of its month
	for _, c := range []struct {
		rule      string
		start     time.Time
		made      int  // occurrences before the error (or in all)
		noFurther bool // the error wraps ErrNoFurther
		most      int  // days examined at most
	}{
		// A fifth Monday is never the first of its month: only DTSTART is made.
		{"FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1;COUNT=2", mon, 1, true, MaxRuleGap + 62},
		{"FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1", mon, 1, true, MaxRuleGap + 62},
		// The 31st of February, every 12 months from February.
		{"FREQ=MONTHLY;BYMONTHDAY=31;INTERVAL=12;COUNT=3", feb, 1, true, MaxRuleGap/365*31 + 62},
		{"FREQ=WEEKLY;BYDAY=MO;COUNT=3", mon, 3, false, 3 * 7},
		// UNTIL: a rule that never matches again ends at UNTIL, without error, soon after it.
		{"FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1;UNTIL=20270101T000000Z", mon, 1, false, 10 * 31},
		// A monthly rule matching each month for 500 months: work grows with what is made.
		{"FREQ=MONTHLY;COUNT=500", mon, 500, false, 500 * 31},
	} {
		r, err := ParseRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		got, examined, err := r.expand(c.start, utc, nil, 500)
		switch {
		case c.noFurther && !errors.Is(err, ErrNoFurther):
			t.Errorf("%s: error %v, want ErrNoFurther", c.rule, err)
		case !c.noFurther && err != nil:
			t.Errorf("%s: %v", c.rule, err)
		}
		if len(got) != c.made {
			t.Errorf("%s: %d occurrences, want %d", c.rule, len(got), c.made)
		}
		if examined > c.most || examined == 0 {
			t.Errorf("%s: %d days examined, want 1 to %d", c.rule, examined, c.most)
		}
	}
}

func TestParseRuleErrors(t *testing.T) {
	for rule, says := range map[string]string{
		"":                                  "is required",
		"FREQ=YEARLY":                       "FREQ must be DAILY, WEEKLY or MONTHLY",
		"COUNT=3":                           "FREQ is required",
		"FREQ=DAILY;COUNT=0":                "COUNT must be a whole number",
		"FREQ=DAILY;COUNT=x":                "COUNT must be a whole number",
		"FREQ=DAILY;INTERVAL=-1":            "INTERVAL must be a whole number",
		"FREQ=DAILY;COUNT=3;UNTIL=20260101": "COUNT and UNTIL must not both be given",
		"FREQ=DAILY;UNTIL=2026-01-01":       "UNTIL must be a UTC date-time",
		"FREQ=DAILY;UNTIL=20260101T100000":  "UNTIL must be a UTC date-time",
		"FREQ=WEEKLY;BYDAY=XX":              "BYDAY must list weekdays",
		"FREQ=WEEKLY;BYDAY=1MO":             "only with FREQ=MONTHLY",
		"FREQ=MONTHLY;BYDAY=6MO":            "BYDAY ordinal must be from -5 to 5",
		"FREQ=MONTHLY;BYMONTHDAY=32":        "BYMONTHDAY must list days from 1 to 31",
		"FREQ=MONTHLY;BYMONTHDAY=0":         "BYMONTHDAY must list days",
		"FREQ=WEEKLY;BYMONTHDAY=1":          "BYMONTHDAY must not be given with FREQ=WEEKLY",
		"FREQ=DAILY;BYHOUR=9":               "BYHOUR is not supported",
		"FREQ=DAILY;COUNT=2;COUNT=3":        "COUNT is given twice",
		"FREQ=DAILY;WKST=XY":                "WKST must be one of",
		"FREQ=DAILY;;COUNT=2":               "is not NAME=VALUE",
		strings.Repeat("FREQ=DAILY;", 100):  "must be at most 1024 bytes",
	} {
		_, err := ParseRule(rule)
		if err == nil || !strings.Contains(err.Error(), says) {
			t.Errorf("ParseRule(%.40q) = %v, want an error saying %q", rule, err, says)
		}
	}
	r, err := ParseRule("rrule:freq=monthly;byday=-1fr,2MO;wkst=su;interval=2;count=4")
	if err != nil {
		t.Fatal(err)
	}
	if r.Freq != Monthly || r.Interval != 2 || r.Count != 4 || r.WeekStart != time.Sunday ||
		len(r.ByDay) != 2 || r.ByDay[0] != (WeekdayNum{-1, time.Friday}) || r.ByDay[1] != (WeekdayNum{2, time.Monday}) {
		t.Errorf("parsed %+v", r)
	}
}

// TestSeriesOccurrences: copies of First with the windows of the rule, each as long as First
// in absolute time; errors name rrule, time_zone and exdates.
func TestSeriesOccurrences(t *testing.T) {
	paris := zone(t, "Europe/Paris")
	first := &Reservation{UserID: "u", ResourceID: "room", Note: "weekly", Start: at(t, paris, "2026-03-23 09:00"), End: at(t, paris, "2026-03-23 10:30")}
	s := Series{First: first, Rule: "FREQ=WEEKLY;COUNT=2", TimeZone: "Europe/Paris"}
	rs, err := s.Occurrences()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[1].Start.Format(time.RFC3339) != "2026-03-30T07:00:00Z" || rs[1].End.Sub(rs[1].Start) != 90*time.Minute ||
		rs[1].Note != "weekly" || rs[1].ResourceID != "room" || rs[1] == first {
		t.Errorf("occurrences %+v", rs)
	}
	for _, c := range []struct {
		s     Series
		field string
	}{
		{Series{First: first, Rule: "FREQ=HOURLY"}, "rrule"},
		{Series{First: first, Rule: "FREQ=DAILY", Max: 10}, "rrule"},
		{Series{First: first, Rule: "FREQ=DAILY;COUNT=2", TimeZone: "Mars/Olympus"}, "time_zone"},
		{Series{First: first, Rule: "FREQ=DAILY;COUNT=2", TimeZone: "Local"}, "time_zone"},
		{Series{First: first, Rule: "FREQ=DAILY;COUNT=1", Exdates: []time.Time{first.Start}}, "exdates"},
		{Series{First: first, Rule: "FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1;COUNT=2"}, "rrule"},
	} {
		_, err := c.s.Occurrences()
		var e *Error
		if !errors.As(err, &e) || e.Code != EINVALID || len(e.Fields) != 1 || e.Fields[0].Field != c.field {
			t.Errorf("%+v: %v, want EINVALID on %s", c.s, err, c.field)
		}
	}
}

// TestSeriesExpandsOnce: a series and its copies (the server checks one, the store books
// another) share one expansion while its inputs stay; a changed input expands again.
func TestSeriesExpandsOnce(t *testing.T) {
	first := &Reservation{UserID: "u", ResourceID: "room", Start: at(t, time.UTC, "2026-03-23 09:00"), End: at(t, time.UTC, "2026-03-23 10:00")}
	s := Series{First: first, Rule: "FREQ=MONTHLY;BYDAY=5MO;BYMONTHDAY=1;COUNT=2"}
	if _, err := s.Occurrences(); err == nil {
		t.Fatal("a rule with no further occurrence was expanded without error")
	}
	made := s.expanded
	c := s // as ReserveSeries passes it to the store
	if _, err := c.Occurrences(); err == nil || c.expanded != made {
		t.Errorf("the copy expanded again (or lost the error %v)", err)
	}
	for name, change := range map[string]func(*Series){
		"rule":    func(s *Series) { s.Rule = "FREQ=DAILY;COUNT=3" },
		"zone":    func(s *Series) { s.TimeZone = "Europe/Paris" },
		"start":   func(s *Series) { f := *s.First; f.Start = f.Start.Add(time.Minute); s.First = &f },
		"exdates": func(s *Series) { s.Exdates = []time.Time{first.Start.AddDate(0, 1, 0)} },
		"max":     func(s *Series) { s.Max = 3 },
	} {
		c := s
		change(&c)
		c.Occurrences()
		if c.expanded == made {
			t.Errorf("%s changed, and the old expansion was used", name)
		}
	}
	d := Series{First: first, Rule: "FREQ=DAILY;COUNT=3"}
	rs, err := d.Occurrences()
	again, err2 := d.Occurrences()
	if err != nil || err2 != nil || len(rs) != 3 || len(again) != 3 || rs[1] == again[1] || !rs[2].Start.Equal(again[2].Start) {
		t.Errorf("expanded twice: %v %v, %d and %d occurrences, shared %v", err, err2, len(rs), len(again), rs[1] == again[1])
	}
}
