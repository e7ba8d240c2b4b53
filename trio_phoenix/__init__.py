"""trio_phoenix: a Trio-native Phoenix Channels client."""
