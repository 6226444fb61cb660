package v1

import (
	"strings"
	"testing"
)

func TestParseCPU(t *testing.T) {
	for in, want := range map[string]int64{
		"500m": 500, "1": 1000, "0.25": 250, "2.5": 2500, "1000m": 1000, "0.001": 1, ".5": 500, "3.": 3000,
		"0": 0, "007": 7000, "9223372036854775m": 9223372036854775,
	} {
		got, err := ParseCPU(in)
		if err != nil || got != want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"": "expected a number", "-1": "expected a number", "+1": "expected a number", "1e3": "expected a number",
		"abc": "expected a number", "0.0001": "smallest unit", "1.5m": "smallest unit", "500 m": "unknown unit",
		"2 cores": "unknown unit", "1Gi": "unknown unit", ".": "expected a number", "1.2.3": "expected a number",
		"99999999999999999": "too large", strings.Repeat("9", 100): "too many digits",
	} {
		got, err := ParseCPU(in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseCPU(%q) = %d, %v; want an error containing %q", in, got, err, msg)
		}
	}
}

func TestParseMemory(t *testing.T) {
	for in, want := range map[string]int64{
		"64Mi": 64 << 20, "1Gi": 1 << 30, "128M": 128e6, "1048576": 1 << 20, "1.5Gi": 3 << 29, "2k": 2000,
		"1Ti": 1 << 40, "1T": 1e12, "1Ki": 1024, "0.5": 1, "8Ei" /* not a unit */ : -1,
	} {
		got, err := ParseMemory(in)
		if want == -1 {
			if err == nil {
				t.Errorf("ParseMemory(%q) = %d, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"": "expected a number", "-64Mi": "expected a number", "64MB": `unknown unit "MB"`, "64K": `unknown unit "K"`,
		"Mi": "expected a number", "lots": "expected a number", "9000000Ti": "too large", "1e3": "expected a number",
	} {
		got, err := ParseMemory(in)
		if err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseMemory(%q) = %d, %v; want an error containing %q", in, got, err, msg)
		}
	}
}

func TestFormatQuantities(t *testing.T) {
	for bytes, want := range map[int64]string{
		0: "0", 64 << 20: "64Mi", 1 << 30: "1Gi", 128e6: "128M", 1536: "1536", 1025: "1025", 3 << 29: "1536Mi", 2000: "2k",
	} {
		if got := FormatMemory(bytes); got != want {
			t.Errorf("FormatMemory(%d) = %q, want %q", bytes, got, want)
		}
		if back, err := ParseMemory(want); err != nil || back != bytes {
			t.Errorf("ParseMemory(FormatMemory(%d)) = %d, %v", bytes, back, err)
		}
	}
	for millis, want := range map[int64]string{500: "500m", 1000: "1", 2500: "2500m", 0: "0"} {
		if got := FormatCPU(millis); got != want {
			t.Errorf("FormatCPU(%d) = %q, want %q", millis, got, want)
		}
	}
}
