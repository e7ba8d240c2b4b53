defmodule PhoenixApp.Presence do
  @moduledoc "The app's `Phoenix.Presence`."
  use Phoenix.Presence, otp_app: :phoenix_app, pubsub_server: PhoenixApp.PubSub
end
