defmodule PhoenixApp.Entry do
  @moduledoc """
  The plug Bandit serves: Phoenix 1.8's `auth_token` for Phoenix 1.7, then the endpoint.

  phoenix.js (and trio_phoenix) send a token as a `Sec-WebSocket-Protocol` entry
  `base64url.bearer.phx.<base64url(token)>` beside `phoenix`. Phoenix 1.8 reads it with
  `auth_token: true`; Phoenix 1.7 has no such option, so this plug decodes the entry into an
  `x-phx-auth-token` request header, which `UserSocket` reads through the `:x_headers` connect
  info. The endpoint's `subprotocols: ["phoenix"]` answers with `phoenix`, as 1.8 does.
  Over LongPoll the token comes in Phoenix 1.8's `x-phoenix-authtoken` header instead, which
  this plug copies to `x-phx-auth-token` too.
  """
  @behaviour Plug
  @prefix "base64url.bearer.phx."

  @impl true
  def init(opts), do: opts

  @impl true
  def call(conn, _opts) do
    conn =
      with [header | _] <- Plug.Conn.get_req_header(conn, "sec-websocket-protocol"),
           @prefix <> encoded <-
             Enum.find(Plug.Conn.Utils.list(header), "", &String.starts_with?(&1, @prefix)),
           {:ok, token} <- Base.url_decode64(encoded, padding: false) do
        Plug.Conn.put_req_header(conn, "x-phx-auth-token", token)
      else
        _ -> conn
      end

    conn =
      case Plug.Conn.get_req_header(conn, "x-phoenix-authtoken") do
        [token | _] -> Plug.Conn.put_req_header(conn, "x-phx-auth-token", token)
        [] -> conn
      end

    PhoenixApp.Endpoint.call(conn, PhoenixApp.Endpoint.init([]))
  end
end
