package envoyconfig

import (
	"fmt"
	"strconv"
	"strings"
)

// decimalRange returns an RE2 expression that fully matches the decimal
// integers 1 to n (n >= 1) written without sign or leading zeros, so a
// route can match "Content-Length within max_request_body" by the
// header's text. Anything it does not match (0, leading zeros, larger
// numbers) goes to the next, more general route.
func decimalRange(n int64) string {
	if n < 1 {
		panic(fmt.Sprintf("decimalRange(%d)", n))
	}
	s := strconv.FormatInt(n, 10)
	var alts []string
	// Every number with fewer digits than n.
	switch len(s) {
	case 1:
	case 2:
		alts = append(alts, "[1-9]")
	default:
		alts = append(alts, fmt.Sprintf("[1-9][0-9]{0,%d}", len(s)-2))
	}
	// Numbers with as many digits: n's first i digits, a smaller digit,
	// then anything.
	for i := range len(s) {
		lo := byte('0')
		if i == 0 {
			lo = '1'
		}
		hi := s[i] - 1
		if hi < lo {
			continue
		}
		alts = append(alts, s[:i]+digitClass(lo, hi)+anyDigits(len(s)-i-1))
	}
	alts = append(alts, s)
	return strings.Join(alts, "|")
}

func digitClass(lo, hi byte) string {
	if lo == hi {
		return string(lo)
	}
	return "[" + string(lo) + "-" + string(hi) + "]"
}

func anyDigits(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return "[0-9]"
	}
	return fmt.Sprintf("[0-9]{%d}", n)
}
