package rewards

// SetAfterClaim makes Record run f between claiming an event and minting
// its points, where a stalled recorder would stop.
func (s *Service) SetAfterClaim(f func()) { s.afterClaim = f }
