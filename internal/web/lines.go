package web

import (
	"bufio"
	"io"
	"strings"
)

// lineReader reads a text stream a line at a time and says whether more
// is already waiting, so a writer can flush once per burst.
type lineReader struct{ r *bufio.Reader }

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: bufio.NewReaderSize(r, 64<<10)} }

// maxLine bounds one line; a longer one is cut into several.
const maxLine = 64 << 10

func (l *lineReader) next() (line string, more bool, err error) {
	b, err := l.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		err = nil
	}
	if len(b) == 0 && err != nil {
		return "", false, err
	}
	if len(b) > maxLine {
		b = b[:maxLine]
	}
	return strings.TrimRight(string(b), "\n"), l.r.Buffered() > 0, nil
}

// readLimited reads r up to n bytes; past them it keeps the last n (the
// newest log lines are the ones a person wants).
func readLimited(r io.Reader, n int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(n)+1))
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return b, err
}
