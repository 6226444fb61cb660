package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/yaml"

	v1 "berth.dev/berth/api/v1"
)

// newTable returns a writer that aligns tab-separated cells the way
// kubectl's tables are: columns three spaces apart.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(&trimWriter{w: w}, 6, 4, 3, ' ', 0)
}

// trimWriter drops the padding tabwriter leaves after an empty last cell,
// so that golden files and `| grep 'x$'` see no trailing spaces.
type trimWriter struct {
	w       io.Writer
	pending []byte
}

func (t *trimWriter) Write(p []byte) (int, error) {
	t.pending = append(t.pending, p...)
	for {
		i := bytes.IndexByte(t.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := bytes.TrimRight(t.pending[:i], " ")
		if _, err := t.w.Write(append(line, '\n')); err != nil {
			return 0, err
		}
		t.pending = t.pending[i+1:]
	}
}

func row(w io.Writer, cells ...string) {
	fmt.Fprintln(w, strings.Join(cells, "\t"))
}

// age renders how long ago t was the way kubectl does: precise while it is
// short, coarser as it grows ("45s", "3m20s", "3m", "5h12m", "2d", "1y").
func age(now, t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return humanDuration(now.Sub(t))
}

func humanDuration(d time.Duration) string {
	secs := int64(d / time.Second)
	// Two machines' clocks disagree a little; a moment in the future is
	// "now", more than that is a sign something is wrong.
	if secs < -1 {
		return "<invalid>"
	}
	if secs < 0 {
		secs = 0
	}
	mins, hours := secs/60, secs/3600
	days := hours / 24
	switch {
	case secs < 120:
		return fmt.Sprintf("%ds", secs)
	case mins < 10:
		return withRest(mins, "m", secs%60, "s")
	case mins < 180:
		return fmt.Sprintf("%dm", mins)
	case hours < 8:
		return withRest(hours, "h", mins%60, "m")
	case hours < 48:
		return fmt.Sprintf("%dh", hours)
	case hours < 24*8:
		return withRest(days, "d", hours%24, "h")
	case days < 365*2:
		return fmt.Sprintf("%dd", days)
	case days < 365*8:
		return withRest(days/365, "y", days%365, "d")
	}
	return fmt.Sprintf("%dy", days/365)
}

func withRest(big int64, bigUnit string, small int64, smallUnit string) string {
	if small == 0 {
		return fmt.Sprintf("%d%s", big, bigUnit)
	}
	return fmt.Sprintf("%d%s%d%s", big, bigUnit, small, smallUnit)
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// shortDigest keeps a digest readable in a table; -o wide and describe
// show it whole.
func shortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return algo + ":" + hex[:12]
}

// humanSize renders bytes in SI units, as image tools do ("12.3MB").
func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f := float64(n)
	for _, suffix := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			if f < 10 {
				return fmt.Sprintf("%.1f%s", f, suffix)
			}
			return fmt.Sprintf("%.0f%s", f, suffix)
		}
	}
	return fmt.Sprintf("%.0fPB", f/unit)
}

// printRaw prints one stored object, or a List of them, as JSON or YAML,
// unchanged from what the server answered.
func printRaw(w io.Writer, format string, data []byte) error {
	switch format {
	case "json":
		b, err := indentJSON(data)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	case "yaml":
		y, err := yaml.JSONToYAML(data)
		if err != nil {
			return v1.Errorf(v1.ErrInternal, "render YAML: %v", err)
		}
		_, err = w.Write(y)
		return err
	}
	return fmt.Errorf("printRaw: unsupported format %q", format)
}

func indentJSON(data []byte) ([]byte, error) {
	var v json.RawMessage = data
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, v1.Errorf(v1.ErrInternal, "render JSON: %v", err)
	}
	return b, nil
}

func listJSON(items []json.RawMessage) ([]byte, error) {
	if items == nil {
		items = []json.RawMessage{}
	}
	b, err := json.Marshal(v1.List{APIVersion: v1.APIVersion, Kind: "List", Items: items})
	if err != nil {
		return nil, v1.Errorf(v1.ErrInternal, "render list: %v", err)
	}
	return b, nil
}
