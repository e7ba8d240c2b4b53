defmodule PhoenixApp.RoomChannel do
  @moduledoc """
  `room:*`: chat with presence, the protocol of the `RoomChannel` of `trio_phoenix.testing`
  plus `untrack` and `track`.

  Join with `%{"user" => name}`; after the join the user is tracked with meta
  `%{online_at: unix seconds}` and `presence_state` is pushed.
  """
  use Phoenix.Channel
  alias PhoenixApp.Presence

  @impl true
  def join(topic, params, socket) do
    user = to_string(Map.get(params, "user") || "anonymous")
    send(self(), :after_join)
    {:ok, %{topic: topic, user: user}, assign(socket, :user, user)}
  end

  @impl true
  def handle_info(:after_join, socket) do
    {:ok, _} = Presence.track(socket, socket.assigns.user, meta(%{}))
    push(socket, "presence_state", Presence.list(socket))
    {:noreply, socket}
  end

  @impl true
  def handle_in("new_msg", payload, socket) do
    broadcast!(socket, "new_msg", %{body: payload["body"], user: socket.assigns.user})
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("set_status", payload, socket) do
    {:ok, _} =
      Presence.update(socket, socket.assigns.user, fn meta ->
        meta |> Map.drop([:phx_ref, :phx_ref_prev]) |> Map.put(:status, payload["status"])
      end)

    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("untrack", _payload, socket) do
    :ok = Presence.untrack(socket, socket.assigns.user)
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("track", payload, socket) do
    {:ok, _} = Presence.track(socket, payload["key"], meta(Map.get(payload, "meta", %{})))
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in(_event, _payload, socket) do
    {:reply, {:error, %{reason: "unknown event"}}, socket}
  end

  defp meta(extra), do: Map.put(extra, :online_at, System.system_time(:second))
end
