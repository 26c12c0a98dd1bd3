package httpcancel

import (
	"errors"
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

// maxBudgetLen bounds the length of a budget, spaces around it aside.
const maxBudgetLen = 64

// The errors of ParseBudget. They never quote the value: it comes from the
// client.
var (
	errBudgetEmpty       = errors.New("empty budget")
	errBudgetTooLong     = errors.New("budget longer than 64 bytes")
	errBudgetSyntax      = errors.New("budget is neither a number of seconds nor a Go duration (2, 0.25, 1.5s, 250ms)")
	errBudgetNotPositive = errors.New("budget not positive")
	errBudgetTooLarge    = errors.New("budget over a day")
)

// ParseBudget parses a time budget as clients send it: a Go duration
// ("1.5s", "250ms", as time.ParseDuration reads it) or a plain decimal
// number of seconds ("2", "0.25"), with spaces around it ignored. It refuses
// empty, negative, zero (also once rounded down to nanoseconds), non-finite
// and absurd (over a day) values, numbers of seconds with signs, exponents
// or other bases, and anything longer than 64 bytes. On failure the
// duration is zero, and the error does not quote s.
func ParseBudget(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return 0, errBudgetEmpty
	case len(s) > maxBudgetLen:
		return 0, errBudgetTooLong
	}
	var d time.Duration
	if isDecimal(s) {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, errBudgetSyntax
		}
		if secs > maxBudget.Seconds() {
			return 0, errBudgetTooLarge
		}
		d = time.Duration(secs * float64(time.Second))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errBudgetSyntax // overflowing ones too
		}
	}
	switch {
	case d <= 0:
		return 0, errBudgetNotPositive
	case d > maxBudget:
		return 0, errBudgetTooLarge
	}
	return d, nil
}

// isDecimal reports whether s is digits with at most one decimal point and
// at least one digit: "2", "0.25", ".5", "3.".
func isDecimal(s string) bool {
	digits, points := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		default:
			return false
		}
	}
	return digits > 0 && points <= 1
}

// formatBudget writes a positive d for the budget header, in milliseconds,
// rounded up so that it never reads as zero, and at most a day, the most
// ParseBudget accepts.
func formatBudget(d time.Duration) string {
	d = min(d, maxBudget)
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return strconv.FormatInt(int64(ms), 10) + "ms"
}
