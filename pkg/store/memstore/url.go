package memstore

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// ParseURL reads the budget of a memory:// store URL:
//
//	memory://?max_bytes=256MiB&max_entries=1000000
//
// Sizes are bytes, or a number with KiB, MiB or GiB. Unknown options are
// errors, so a typo never silently means "unbounded".
func ParseURL(raw string) (Options, error) {
	var o Options
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !IsURLScheme(scheme) {
		return o, fmt.Errorf("memstore: %q is not a memory:// URL", raw)
	}
	path, query, _ := strings.Cut(rest, "?")
	if path != "" && path != "/" {
		return o, fmt.Errorf("memstore: a memory:// URL has no host or path (got %q)", path)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return o, fmt.Errorf("memstore: %w", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		switch k {
		case "max_bytes":
			if o.MaxBytes, err = parseSize(v); err != nil {
				return o, fmt.Errorf("memstore: max_bytes: %w", err)
			}
		case "max_entries":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return o, fmt.Errorf("memstore: max_entries: %q is not a positive number", v)
			}
			o.MaxEntries = n
		default:
			return o, fmt.Errorf("memstore: unknown option %q (max_bytes, max_entries)", k)
		}
	}
	return o, nil
}

// IsURLScheme reports whether a store URL's scheme names this store
// (memory, or its short form mem).
func IsURLScheme(scheme string) bool {
	return strings.EqualFold(scheme, "memory") || strings.EqualFold(scheme, "mem")
}

func parseSize(v string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(v, suffix) {
			v, mult = strings.TrimSuffix(v, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a positive size like 1048576 or 256MiB", v)
	}
	return n * mult, nil
}
