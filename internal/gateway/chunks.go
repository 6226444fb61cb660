package gateway

import "errors"

// chunkScanner finds the end of a chunked body (RFC 9112 7.1) in the
// bytes relayed through it, trailers included, without changing them.
type chunkScanner struct {
	st       int
	size     int64
	digits   int
	trailers int // bytes of trailer lines so far
}

const (
	csSize = iota
	csExt
	csSizeLF
	csData
	csDataCR
	csDataLF
	csTrailerStart
	csTrailer
	csEndLF
	csDone
)

var errBadChunk = errors.New("malformed chunked body")

// scan reads b on from where the last call stopped. n is how many bytes
// of b belong to the body; done that the body ended with them.
func (s *chunkScanner) scan(b []byte) (n int, done bool, err error) {
	i := 0
	for i < len(b) {
		c := b[i]
		switch s.st {
		case csSize:
			v, ok := unhex(c)
			switch {
			case ok:
				if s.digits == 15 {
					return i, false, errBadChunk
				}
				s.size = s.size<<4 | int64(v)
				s.digits++
			case s.digits == 0:
				return i, false, errBadChunk
			case c == ';' || c == ' ' || c == '\t':
				s.st = csExt
			case c == '\r':
				s.st = csSizeLF
			default:
				return i, false, errBadChunk
			}
			i++
		case csExt:
			if c == '\r' {
				s.st = csSizeLF
			} else if c == '\n' {
				return i, false, errBadChunk
			}
			i++
		case csSizeLF:
			if c != '\n' {
				return i, false, errBadChunk
			}
			i++
			if s.size == 0 {
				s.st = csTrailerStart
			} else {
				s.st = csData
			}
		case csData:
			k := min(s.size, int64(len(b)-i))
			i += int(k)
			s.size -= k
			if s.size == 0 {
				s.st = csDataCR
			}
		case csDataCR:
			if c != '\r' {
				return i, false, errBadChunk
			}
			i++
			s.st = csDataLF
		case csDataLF:
			if c != '\n' {
				return i, false, errBadChunk
			}
			i++
			s.st, s.size, s.digits = csSize, 0, 0
		case csTrailerStart:
			if c == '\r' {
				s.st = csEndLF
				i++
				continue
			}
			s.st = csTrailer
		case csTrailer:
			s.trailers++
			if s.trailers > 64<<10 {
				return i, false, errBadChunk
			}
			if c == '\n' {
				s.st = csTrailerStart
			}
			i++
		case csEndLF:
			if c != '\n' {
				return i, false, errBadChunk
			}
			s.st = csDone
			return i + 1, true, nil
		case csDone:
			return i, true, nil
		}
	}
	return i, false, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
