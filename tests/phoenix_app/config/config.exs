import Config

config :phoenix, :json_library, Jason
config :logger, level: :warning

config :phoenix_app, PhoenixApp.Endpoint,
  server: false,
  secret_key_base: String.duplicate("trio_phoenix test app ", 4),
  pubsub_server: PhoenixApp.PubSub,
  check_origin: false
