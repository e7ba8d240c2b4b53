defmodule PhoenixApp.UserSocket do
  @moduledoc """
  The socket: a token check in `connect/3` and a socket id per user.

  The token is the `token` param or the `auth_token` (see `PhoenixApp.Entry`). A missing
  token is accepted; any token other than `"secret"` is refused (HTTP 403). A `user` param
  names the socket `user_socket:<user>`, so tests can disconnect it by id.
  """
  use Phoenix.Socket

  channel "echo:*", PhoenixApp.EchoChannel
  channel "room:*", PhoenixApp.RoomChannel

  @impl true
  def connect(params, socket, connect_info) do
    headers = Map.get(connect_info, :x_headers, [])

    token =
      case List.keyfind(headers, "x-phx-auth-token", 0) do
        {_, value} -> value
        nil -> params["token"]
      end

    if token in [nil, "secret"] do
      {:ok, assign(socket, :user, params["user"])}
    else
      :error
    end
  end

  @impl true
  def id(%{assigns: %{user: nil}}), do: nil
  def id(%{assigns: %{user: user}}), do: "user_socket:#{user}"
end
