package registry

import (
	"errors"
	"fmt"
)

// MaxNameLen bounds host, service, zone and member names.
const MaxNameLen = 63

// ErrInvalidName is wrapped by every name validation error.
var ErrInvalidName = errors.New("invalid name")

// ValidateName checks a host, service, zone or member name. Names become
// path segments of etcd keys, so they are limited to letters, digits, '.',
// '_' and '-', start and end with a letter or digit, and are at most
// MaxNameLen long. what names the field for the error message.
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidName, what)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %s %q is longer than %d characters", ErrInvalidName, what, name, MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if alnum {
			continue
		}
		if (c == '.' || c == '_' || c == '-') && i > 0 && i < len(name)-1 {
			continue
		}
		return fmt.Errorf("%w: %s %q: character %q at position %d is not allowed (use letters, digits, '.', '_' or '-', starting and ending with a letter or digit)",
			ErrInvalidName, what, name, c, i)
	}
	return nil
}
