defmodule PhoenixApp.EchoChannel do
  @moduledoc """
  `echo:*`: every server behaviour on demand, the same protocol as the `EchoChannel` of
  `trio_phoenix.testing` plus the scenario suite's extras (`bulk`, `sleep`, `disconnect`).

  Join params `%{"reject" => reason}` refuse the join, `%{"crash" => true}` crash it; otherwise
  the join replies ok with its params.
  """
  use Phoenix.Channel

  @impl true
  def join(_topic, %{"reject" => reason}, _socket), do: {:error, %{reason: reason}}
  def join(_topic, %{"crash" => true}, _socket), do: raise("join crash requested")
  def join(_topic, params, socket), do: {:ok, params, socket}

  @impl true
  def handle_in("echo", payload, socket), do: {:reply, {:ok, payload}, socket}
  def handle_in("error", payload, socket), do: {:reply, {:error, payload}, socket}
  def handle_in("noreply", _payload, socket), do: {:noreply, socket}
  def handle_in("crash", _payload, _socket), do: raise("crash requested")
  def handle_in("stop", _payload, socket), do: {:stop, :normal, socket}
  def handle_in("stop_reply", _payload, socket), do: {:stop, :normal, {:ok, %{}}, socket}

  def handle_in("push", %{"event" => event, "payload" => payload}, socket) do
    push(socket, event, payload)
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("push_binary", %{"event" => event, "bytes" => bytes}, socket) do
    push(socket, event, {:binary, :erlang.list_to_binary(bytes)})
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("broadcast", %{"event" => event, "payload" => payload}, socket) do
    broadcast!(socket, event, payload)
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("broadcast_binary", %{"event" => event, "bytes" => bytes}, socket) do
    broadcast!(socket, event, {:binary, :erlang.list_to_binary(bytes)})
    {:reply, {:ok, %{}}, socket}
  end

  def handle_in("reply_later", params, socket) do
    ref = socket_ref(socket)
    delay = round(Map.get(params, "delay", 0) * 1000)
    payload = Map.get(params, "payload", %{})

    Task.start(fn ->
      Process.sleep(delay)
      reply(ref, {:ok, payload})
    end)

    {:noreply, socket}
  end

  # The scenario suite's extras.

  def handle_in("bulk", %{"event" => event, "count" => count}, socket) do
    for n <- 1..count//1, do: broadcast!(socket, event, %{"n" => n})
    {:reply, {:ok, %{"count" => count}}, socket}
  end

  def handle_in("sleep", %{"ms" => ms}, socket) do
    Process.sleep(ms)
    {:reply, {:ok, %{"slept" => ms}}, socket}
  end

  def handle_in("disconnect", _payload, socket) do
    PhoenixApp.Endpoint.broadcast(socket.id, "disconnect", %{})
    {:noreply, socket}
  end

  def handle_in(_event, _payload, socket) do
    {:reply, {:error, %{reason: "unknown event"}}, socket}
  end
end
