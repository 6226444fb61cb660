package v1

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// ParseCPU reads a CPU quantity in Kubernetes syntax, "500m", "1", "0.25",
// "2.5", and returns thousandths of a core. Quantities finer than 1m are
// refused rather than rounded, so what runs is what was written.
func ParseCPU(s string) (millis int64, err error) {
	num, unit := splitQuantity(s)
	if num == "" {
		return 0, fmt.Errorf("cpu %q: expected a number of cores (\"0.5\", \"2\") or millicores (\"500m\")", s)
	}
	var scale int64
	switch unit {
	case "m":
		scale = 1
	case "":
		scale = 1000
	default:
		return 0, fmt.Errorf("cpu %q: unknown unit %q; write cores (\"0.5\", \"2\") or millicores (\"500m\")", s, unit)
	}
	r, err := parseDecimal(num)
	if err != nil {
		return 0, fmt.Errorf("cpu %q: %v", s, err)
	}
	r.Mul(r, big.NewRat(scale, 1))
	if !r.IsInt() {
		return 0, fmt.Errorf("cpu %q: finer than the smallest unit, 1m (a thousandth of a core)", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("cpu %q: too large", s)
	}
	return r.Num().Int64(), nil
}

// FormatCPU renders millicores as ParseCPU reads them: whole cores as "2",
// anything else as "1500m".
func FormatCPU(millis int64) string {
	if millis%1000 == 0 {
		return strconv.FormatInt(millis/1000, 10)
	}
	return strconv.FormatInt(millis, 10) + "m"
}

var memoryUnits = map[string]int64{
	"":   1,
	"k":  1e3,
	"M":  1e6,
	"G":  1e9,
	"T":  1e12,
	"P":  1e15,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
	"Pi": 1 << 50,
}

// ParseMemory reads a memory quantity in Kubernetes syntax, "64Mi", "1Gi",
// "128M", "1.5Gi", "1048576", and returns bytes. A fraction of a byte is
// rounded up, as Kubernetes does.
func ParseMemory(s string) (bytes int64, err error) {
	num, unit := splitQuantity(s)
	if num == "" {
		return 0, fmt.Errorf("memory %q: expected a number with an optional unit, e.g. \"64Mi\" or \"1Gi\"", s)
	}
	scale, ok := memoryUnits[unit]
	if !ok {
		return 0, fmt.Errorf("memory %q: unknown unit %q; use one of Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000)", s, unit)
	}
	r, err := parseDecimal(num)
	if err != nil {
		return 0, fmt.Errorf("memory %q: %v", s, err)
	}
	r.Mul(r, big.NewRat(scale, 1))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !r.IsInt() {
		n.Add(n, big.NewInt(1))
	}
	if !n.IsInt64() {
		return 0, fmt.Errorf("memory %q: too large", s)
	}
	return n.Int64(), nil
}

// FormatMemory renders bytes in the unit that divides them exactly with the
// smallest number, powers of 1024 first on a tie: 67108864 → "64Mi",
// 128000000 → "128M", 1000 → "1k", 1536 → "1536".
func FormatMemory(bytes int64) string {
	best, unit := bytes, ""
	for _, u := range []string{"Pi", "Ti", "Gi", "Mi", "Ki", "P", "T", "G", "M", "k"} {
		if m := memoryUnits[u]; bytes != 0 && bytes%m == 0 && abs(bytes/m) < abs(best) {
			best, unit = bytes/m, u
		}
	}
	return strconv.FormatInt(best, 10) + unit
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// splitQuantity splits "1.5Gi" into "1.5" and "Gi".
func splitQuantity(s string) (num, unit string) {
	i := strings.LastIndexFunc(s, func(r rune) bool { return (r >= '0' && r <= '9') || r == '.' })
	return s[:i+1], s[i+1:]
}

// parseDecimal reads digits with an optional fraction: no sign, no exponent,
// no spaces.
func parseDecimal(num string) (*big.Rat, error) {
	if num == "" {
		return nil, fmt.Errorf("expected a number")
	}
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" && frac == "" {
		return nil, fmt.Errorf("expected a number")
	}
	for _, c := range whole + frac {
		if c < '0' || c > '9' {
			return nil, fmt.Errorf("expected a number")
		}
	}
	// Past this many digits the value overflows int64 whatever the unit;
	// refusing early keeps big.Rat from working on a megabyte of digits.
	if len(strings.TrimLeft(whole, "0")) > 20 || len(frac) > 20 {
		return nil, fmt.Errorf("too many digits")
	}
	text := strings.TrimLeft(whole, "0")
	if text == "" {
		text = "0"
	}
	if frac != "" {
		text += "." + frac
	}
	r, ok := new(big.Rat).SetString(text)
	if !ok {
		return nil, fmt.Errorf("expected a number")
	}
	return r, nil
}
