defmodule PhoenixApp.Endpoint do
  @moduledoc """
  One socket at `/socket` (WebSocket and LongPoll, V1 and V2 serializers) and the same socket
  with permessage-deflate at `/compressed`.
  """
  use Phoenix.Endpoint, otp_app: :phoenix_app

  @websocket [
    connect_info: [:x_headers],
    subprotocols: ["phoenix"],
    max_frame_size: 10_000_000
  ]

  socket "/socket", PhoenixApp.UserSocket,
    websocket: @websocket,
    longpoll: [connect_info: [:x_headers]]

  socket "/compressed", PhoenixApp.UserSocket, websocket: [{:compress, true} | @websocket]
end
