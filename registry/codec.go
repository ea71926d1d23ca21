package registry

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Values are stored as protojson so that `etcdctl get --prefix /understudy/`
// is readable by a person. Field names stay as in the .proto file.
var (
	marshalOpts   = protojson.MarshalOptions{UseProtoNames: true}
	unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true} // newer writers may add fields
)

// Encode renders a stored record.
func Encode(m proto.Message) ([]byte, error) {
	b, err := marshalOpts.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return b, nil
}

// MustEncode is Encode for messages built in code, which cannot fail to encode.
func MustEncode(m proto.Message) string {
	b, err := Encode(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Decode parses a stored record into m.
func Decode(b []byte, m proto.Message) error {
	if err := unmarshalOpts.Unmarshal(b, m); err != nil {
		return fmt.Errorf("decode %s: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return nil
}
