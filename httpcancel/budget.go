package httpcancel

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultBudgetHeader is the request header a client names its time budget
// in, when WithClientBudget is given no other name. Transport sends the
// remaining budget of the current operation in it.
const DefaultBudgetHeader = "Request-Timeout"

// maxBudget bounds what ParseBudget accepts before the server's own cap:
// anything longer is not a budget but garbage or an attack.
const maxBudget = 24 * time.Hour

// ParseBudget parses a time budget as clients send it: a Go duration
// ("1.5s", "250ms") or a number of seconds ("2", "0.25"). It refuses empty,
// negative, zero, non-finite and absurd (over a day) values, and anything
// longer than 64 bytes.
func ParseBudget(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, errors.New("empty budget")
	case len(s) > 64:
		return 0, errors.New("budget too long")
	}
	var d time.Duration
	if last := s[len(s)-1]; last >= '0' && last <= '9' || last == '.' {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return 0, errors.New("budget is not a number of seconds")
		}
		if secs > maxBudget.Seconds() {
			return 0, errors.New("budget over a day")
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("budget is not a duration")
		}
	}
	switch {
	case d <= 0:
		return 0, errors.New("budget not positive")
	case d > maxBudget:
		return 0, errors.New("budget over a day")
	}
	return d, nil
}

// formatBudget writes d for the budget header, in milliseconds, rounded up
// so that a positive budget never reads as zero.
func formatBudget(d time.Duration) string {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10) + "ms"
}
