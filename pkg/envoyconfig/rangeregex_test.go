package envoyconfig

import (
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

// full compiles re as Envoy's safe_regex uses it: a full match.
func full(re string) *regexp.Regexp { return regexp.MustCompile("^(?:" + re + ")$") }

func TestDecimalRangeExhaustive(t *testing.T) {
	for n := int64(1); n <= 1200; n++ {
		re := full(decimalRange(n))
		for k := int64(0); k <= 1500; k++ {
			if got, want := re.MatchString(strconv.FormatInt(k, 10)), k >= 1 && k <= n; got != want {
				t.Fatalf("decimalRange(%d) = %q matches %d: %v, want %v", n, decimalRange(n), k, got, want)
			}
		}
	}
}

func TestDecimalRangeLarge(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int64{1 << 20, 1 << 30, 999_999, 1_000_000, 4_294_901_759} {
		re := full(decimalRange(n))
		for _, k := range []int64{0, 1, 9, 10, n - 1, n, n + 1, n * 10, n / 10} {
			if got, want := re.MatchString(strconv.FormatInt(k, 10)), k >= 1 && k <= n; got != want {
				t.Errorf("decimalRange(%d) matches %d: %v, want %v", n, k, got, want)
			}
		}
		for range 20000 {
			k := r.Int64N(3 * n)
			if got, want := re.MatchString(strconv.FormatInt(k, 10)), k >= 1 && k <= n; got != want {
				t.Fatalf("decimalRange(%d) matches %d: %v, want %v", n, k, got, want)
			}
		}
	}
}

func TestDecimalRangeRejectsOddSpellings(t *testing.T) {
	re := full(decimalRange(1 << 20))
	for _, s := range []string{"", "0", "00", "01", "+5", "-5", " 5", "5 ", "1e3", "0x10", "١٢"} {
		if re.MatchString(s) {
			t.Errorf("matches %q; it must fall through to the headers-first route", s)
		}
	}
}
