package event

import (
	"fmt"

	"github.com/google/uuid"
)

// NewRootID returns a UUID v7: random, yet sorting by the time it was made,
// which keeps Kafka keys and lake files in rough time order.
func NewRootID() (string, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", fmt.Errorf("new root id: %w", err)
	}
	return id.String(), nil
}
