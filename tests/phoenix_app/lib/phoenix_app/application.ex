defmodule PhoenixApp.Application do
  @moduledoc """
  Starts PubSub, Presence, the endpoint and a Bandit listener on 127.0.0.1.

  The port comes from `PORT` (0, the default, takes any free port). Once the listener is up,
  the bound port is printed on stdout as `PHOENIX_APP_READY port=N` for the test harness.
  """
  use Application

  @impl true
  def start(_type, _args) do
    port = String.to_integer(System.get_env("PORT", "0"))

    children = [
      {Phoenix.PubSub, name: PhoenixApp.PubSub},
      PhoenixApp.Presence,
      PhoenixApp.Endpoint,
      Supervisor.child_spec(
        {Bandit, plug: PhoenixApp.Entry, scheme: :http, ip: {127, 0, 0, 1}, port: port},
        id: :listener
      )
    ]

    {:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one, name: PhoenixApp.Sup)

    {_, listener, _, _} =
      Enum.find(Supervisor.which_children(sup), fn {id, _, _, _} -> id == :listener end)

    {:ok, {_ip, bound}} = ThousandIsland.listener_info(listener)
    IO.puts("PHOENIX_APP_READY port=#{bound}")
    {:ok, sup}
  end
end
