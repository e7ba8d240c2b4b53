defmodule PhoenixApp.Endpoint do
  @moduledoc """
  One socket at `/socket` (WebSocket and LongPoll, V1 and V2 serializers) and the same socket
  with permessage-deflate at `/compressed`, with a 1-second idle timeout at `/short_idle`, and
  with LongPoll only at `/lp_only` (`websocket: false`: a WebSocket upgrade there fails, as
  behind a proxy that blocks WebSockets, for the fallback scenarios).

  LongPoll answers an empty poll after 1 s instead of 10 s (`window_ms`) and gives up on a
  lost session after 200 ms instead of 2 s (`pubsub_timeout_ms`), so that the scenarios that
  lose a session over LongPoll take about a second, not twelve.

  Any other request is answered 404, as a real app's router does (`Phoenix.Router.NoRouteError`);
  without it Bandit answers 500 to a request no plug answered.
  """
  use Phoenix.Endpoint, otp_app: :phoenix_app

  @websocket [
    connect_info: [:x_headers],
    subprotocols: ["phoenix"],
    max_frame_size: 10_000_000
  ]

  @longpoll [connect_info: [:x_headers], window_ms: 1_000, pubsub_timeout_ms: 200]

  socket "/socket", PhoenixApp.UserSocket, websocket: @websocket, longpoll: @longpoll

  socket "/compressed", PhoenixApp.UserSocket, websocket: [{:compress, true} | @websocket]

  # A 1-second idle timeout, for wire scenarios that end only by it.
  socket "/short_idle", PhoenixApp.UserSocket, websocket: [{:timeout, 1_000} | @websocket]

  # LongPoll only: the WebSocket fallback scenarios start here.
  socket "/lp_only", PhoenixApp.UserSocket, websocket: false, longpoll: @longpoll

  plug :not_found

  defp not_found(conn, _opts), do: Plug.Conn.send_resp(conn, 404, "Not Found")
end
