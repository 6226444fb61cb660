package logs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxCarry bounds the bytes held for a record whose newline has not come
// yet; the shim never writes records this long, so only a foreign file does.
const maxCarry = 1 << 20

// source reads the records of one instance: its rotated files oldest first,
// then the live file, which it keeps open to follow. When the live file is
// rotated away, the open handle still reads the renamed file to its end
// before the source moves to the new live file, so no line is lost.
type source struct {
	instance string
	live     string   // INSTANCE.log
	queue    []string // rotated files not read yet, oldest first

	f      *os.File
	r      *bufio.Reader
	isLive bool  // f is (or was, until rotation was seen) the live file
	off    int64 // bytes consumed from f
	done   bool  // not following and the live file is read to its end

	carry []byte // bytes after the last newline
	j     joiner
	ready []line
}

func (s *source) close() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// peek returns the next line without taking it, reading as needed. final
// means nothing more will be appended (not following), so the end of the
// live file ends every line still open.
func (s *source) peek(final bool) (line, bool, error) {
	for len(s.ready) == 0 {
		progress, err := s.step(final)
		if err != nil {
			return line{}, false, err
		}
		if !progress && len(s.ready) == 0 {
			return line{}, false, nil
		}
	}
	return s.ready[0], true, nil
}

// poll returns every line that can be completed now, moving to a new live
// file if the current one was rotated or truncated.
func (s *source) poll() ([]line, error) {
	for {
		for {
			progress, err := s.step(false)
			if err != nil {
				return nil, err
			}
			if !progress {
				break
			}
		}
		moved, err := s.checkRotation()
		if err != nil {
			return nil, err
		}
		if !moved {
			break
		}
	}
	out := s.ready
	s.ready = nil
	return out, nil
}

// step consumes one record (or one file boundary). It reports false when
// nothing more can be read now.
func (s *source) step(final bool) (bool, error) {
	if s.done {
		return false, nil
	}
	if s.f == nil {
		opened, err := s.open()
		if err != nil || !opened {
			if final && err == nil {
				s.finish()
			}
			return false, err
		}
	}
	b, err := s.r.ReadSlice('\n')
	s.off += int64(len(b))
	switch {
	case err == nil:
		raw := b[:len(b)-1]
		if len(s.carry) > 0 {
			raw = append(s.carry, raw...)
			s.carry = s.carry[:0]
		}
		s.add(raw)
		return true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		s.carry = append(s.carry, b...)
		if len(s.carry) > maxCarry {
			s.endRecord()
		}
		return true, nil
	case errors.Is(err, io.EOF):
		s.carry = append(s.carry, b...)
		if !s.isLive {
			// A rotated file is complete: whatever is left is a record.
			s.endRecord()
			s.close()
			return true, nil
		}
		if final {
			s.finish()
		}
		return false, nil
	default:
		return false, fmt.Errorf("read log of %s: %w", s.instance, err)
	}
}

// open opens the next rotated file, or the live one. It reports false when
// the live file does not exist (yet).
func (s *source) open() (bool, error) {
	for len(s.queue) > 0 {
		path := s.queue[0]
		s.queue = s.queue[1:]
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // rotated out of existence since it was listed
		}
		if err != nil {
			return false, fmt.Errorf("open log: %w", err)
		}
		s.use(f, false)
		return true, nil
	}
	f, err := os.Open(s.live)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open log: %w", err)
	}
	s.use(f, true)
	return true, nil
}

func (s *source) use(f *os.File, live bool) {
	s.f, s.isLive, s.off = f, live, 0
	if s.r == nil {
		s.r = bufio.NewReaderSize(f, 64<<10)
	} else {
		s.r.Reset(f)
	}
}

// checkRotation looks at the live path once the open file is read to its
// end. It reports true when the source moved on and should be read again.
func (s *source) checkRotation() (bool, error) {
	if s.f == nil {
		// The live file did not exist at the last step; open retries.
		_, err := os.Stat(s.live)
		return err == nil, nil
	}
	st, err := os.Stat(s.live)
	if errors.Is(err, fs.ErrNotExist) {
		// Renamed away and its successor not created yet: keep reading the
		// old file, and look again next time.
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat log: %w", err)
	}
	cur, err := s.f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat log: %w", err)
	}
	if !os.SameFile(st, cur) {
		// Rotated: the open file is now a rotated one. Reading it to its
		// end then opens the new live file.
		s.isLive = false
		return true, nil
	}
	if cur.Size() < s.off {
		// Truncated in place: start again from the top.
		if _, err := s.f.Seek(0, io.SeekStart); err != nil {
			return false, fmt.Errorf("seek log: %w", err)
		}
		s.r.Reset(s.f)
		s.off = 0
		s.carry = s.carry[:0]
		return true, nil
	}
	return false, nil
}

func (s *source) add(raw []byte) {
	if l, ok := s.j.add(s.instance, raw); ok {
		s.ready = append(s.ready, l)
	}
}

// endRecord treats the carried bytes as a whole record.
func (s *source) endRecord() {
	if len(s.carry) > 0 {
		s.add(s.carry)
		s.carry = s.carry[:0]
	}
}

// finish ends the source when not following: the last record and any open
// partial line are complete as they are.
func (s *source) finish() {
	s.endRecord()
	s.ready = append(s.ready, s.j.flush()...)
	s.done = true
	s.close()
}
